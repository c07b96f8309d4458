//! `calicoctl create|apply|replace|delete -f FILE`, `calicoctl delete KIND NAME...` and `calicoctl validate`.
//!
//! A file is taken whole before anything is written: every document is parsed and checked (envelope,
//! metadata, the kind's rules), then every write is tried on a `DryRun` of the store (it exists, it does not,
//! its resourceVersion is stale, the pool overlaps another or is in use): a failure names the document and
//! nothing is written. Then the resources are written one by one in file order, as calicoctl does; what can
//! still fail there (a concurrent writer, the datastore going away) stops the command with calicoctl's
//! "Partial success: applied the first N out of M" and the error.
use super::{open, single_kind};
use crate::args::Args;
use crate::dryrun::DryRun;
use crate::error::{CtlError, Result};
use crate::input::{self, Item};
use crate::resource::{self, Prepared, Stamp};
use datastore::resources::kinds::kind_named;
use datastore::store::{Key, Store};

#[derive(Clone, Copy, PartialEq)]
pub enum Action {
    Apply,
    Create,
    Replace,
    Delete,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
    fn past(self) -> &'static str {
        match self {
            Action::Apply => "applied",
            Action::Create => "created",
            Action::Replace => "replaced",
            Action::Delete => "deleted",
        }
    }
}

const FILE_FLAGS: &[&str] = &["filename", "recursive", "skip-empty", "config", "namespace"];

/// Every resource of `-f`, or none with `--skip-empty` (an empty file is otherwise an error, as in calicoctl).
pub fn load_items(args: &Args) -> Result<Vec<Item>> {
    let file = args.get("filename").ok_or_else(|| CtlError::Usage("-f/--filename is required".into()))?;
    let fail = |e: CtlError| CtlError::Failed(format!("failed to execute command: {e}"));
    let mut items = Vec::new();
    for (name, text) in input::read_sources(file, args.on("recursive")).map_err(fail)? {
        let found = input::items(&name, &text).map_err(fail)?;
        if found.is_empty() && !args.on("skip-empty") {
            return Err(fail(CtlError::Input(format!("no resources specified in file {name}"))));
        }
        items.extend(found);
    }
    Ok(items)
}

/// calicoctl's summary of a command that wrote nothing: `failed to apply 'BGPPeer' resource: ...`.
fn failed(action: Action, all: &[Prepared], errors: &[String]) -> CtlError {
    let verb = action.verb();
    let what = match (all.len(), single_kind(all.iter().map(|p| p.kind().kind))) {
        (1, Some(k)) => format!("'{k}' resource"),
        (_, Some(k)) => format!("any '{k}' resources"),
        (_, None) => "any resources".to_string(),
    };
    let prefix = if action == Action::Delete { format!("Failed to {verb}") } else { format!("failed to {verb}") };
    CtlError::Failed(format!("{prefix} {what}: {}", errors.join("\n")))
}

fn act(store: &mut dyn Store, action: Action, p: &Prepared) -> Result<()> {
    let stamp = Stamp::now();
    match action {
        Action::Apply => resource::apply(store, p, &stamp).map(drop),
        Action::Create => resource::create(store, p, &stamp).map(drop),
        Action::Replace => resource::update(store, p).map(drop),
        Action::Delete => resource::delete(store, &p.key, p.rv).map(drop),
    }
}

fn message(e: &CtlError) -> String {
    if e.is_unavailable() {
        format!("datastore unavailable: {e}")
    } else {
        e.to_string()
    }
}

/// Tries every write on a dry run, then makes them; prints calicoctl's summary.
fn execute(args: &Args, action: Action, prepared: &[Prepared]) -> Result<()> {
    let skippable = |e: &CtlError| match e {
        CtlError::Exists(_) => action == Action::Create && args.on("skip-exists"),
        CtlError::NotFound(_) => action == Action::Delete && args.on("skip-not-exists"),
        _ => false,
    };
    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    let mut skip = Vec::with_capacity(prepared.len());
    {
        let mut dry = DryRun::new(&*session);
        let mut errors = Vec::new();
        for p in prepared {
            match act(&mut dry, action, p) {
                Ok(()) => skip.push(false),
                Err(e) if skippable(&e) => skip.push(true),
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    errors.push(format!("{}: {}", p.place, message(&e)));
                    skip.push(true);
                }
            }
        }
        if !errors.is_empty() {
            return Err(failed(action, prepared, &errors));
        }
    }
    let kind = single_kind(prepared.iter().map(|p| p.kind().kind));
    let of = |n: usize| match kind {
        Some(k) => format!("{n} '{k}' resource(s)"),
        None => format!("{n} resource(s)"),
    };
    for (done, (p, skip)) in prepared.iter().zip(skip).enumerate() {
        if skip {
            continue;
        }
        if let Err(e) = act(&mut *session, action, p) {
            if done == 0 {
                return Err(failed(action, prepared, &[format!("{}: {}", p.place, message(&e))]));
            }
            let what = match kind {
                Some(k) => format!("'{k}' resources"),
                None => "resources".to_string(),
            };
            println!("Partial success: {} the first {done} out of {} {what}:", action.past(), prepared.len());
            return Err(CtlError::Failed(format!("hit error: {}: {}", p.place, message(&e))));
        }
    }
    println!("Successfully {} {}", action.past(), of(prepared.len()));
    Ok(())
}

/// Checks every item; all errors at once, each naming its document.
fn prepare_all(items: &[Item], namespace: Option<&str>, full: bool) -> std::result::Result<Vec<Prepared>, Vec<String>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        match resource::prepare_as(item, namespace, full) {
            Ok(p) => ok.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

/// The summary for documents that did not pass their checks (their kinds as far as they could be read).
fn invalid(action: Action, items: &[Item], errors: &[String]) -> CtlError {
    let kinds: Vec<&str> = items.iter().map(|i| i.value.get("kind").and_then(|k| k.as_str()).unwrap_or("")).collect();
    let kind = single_kind(kinds.iter().copied()).and_then(kind_named).map(|k| k.kind);
    let verb = action.verb();
    let what = match (items.len(), kind) {
        (1, Some(k)) => format!("'{k}' resource"),
        (_, Some(k)) => format!("any '{k}' resources"),
        (_, None) => "any resources".to_string(),
    };
    let prefix = if action == Action::Delete { format!("Failed to {verb}") } else { format!("failed to {verb}") };
    CtlError::Failed(format!("{prefix} {what}: {}", errors.join("\n")))
}

pub fn file_command(args: &Args, action: Action) -> Result<()> {
    let mut flags = FILE_FLAGS.to_vec();
    if action == Action::Create {
        flags.push("skip-exists");
    }
    args.allow(action.verb(), &flags)?;
    if let Some(extra) = args.rest(1).first() {
        return Err(CtlError::Usage(format!("unexpected argument {extra:?}: calicoctl {} takes -f FILE", action.verb())));
    }
    let items = load_items(args)?;
    if items.is_empty() {
        println!("No resources specified");
        return Ok(());
    }
    let prepared = prepare_all(&items, args.get("namespace"), true).map_err(|e| invalid(action, &items, &e))?;
    execute(args, action, &prepared)
}

/// `delete -f FILE` or `delete KIND NAME...`.
pub fn delete(args: &Args) -> Result<()> {
    let mut flags = FILE_FLAGS.to_vec();
    flags.push("skip-not-exists");
    args.allow("delete", &flags)?;
    let words = args.rest(1);
    let prepared = if args.get("filename").is_some() {
        if let Some(extra) = words.first() {
            return Err(CtlError::Usage(format!("unexpected argument {extra:?} with -f")));
        }
        let items = load_items(args)?;
        if items.is_empty() {
            println!("No resources specified");
            return Ok(());
        }
        prepare_all(&items, args.get("namespace"), false).map_err(|e| invalid(Action::Delete, &items, &e))?
    } else {
        let [kind, names @ ..] = words else {
            return Err(CtlError::Usage("calicoctl delete needs -f FILE or KIND NAME...".into()));
        };
        let kind = kind_named(kind).ok_or_else(|| CtlError::Usage(format!("resource type '{kind}' is not supported")))?;
        if names.is_empty() {
            return Err(CtlError::Usage(format!("calicoctl delete {}: which one? (a NAME)", kind.kind.to_lowercase())));
        }
        let namespace = if kind.namespaced { args.get("namespace").unwrap_or("default").to_string() } else { String::new() };
        let mut out = Vec::new();
        for name in names {
            if name.is_empty() {
                return Err(CtlError::Usage("resource name may not be empty".into()));
            }
            let key = Key::Resource { kind, namespace: namespace.clone(), name: name.clone() };
            out.push(Prepared { place: resource::identifier(&key), key, value: serde_json::Value::Null, rv: None });
        }
        out
    };
    execute(args, Action::Delete, &prepared)
}

/// `calicoctl validate -f FILE`: the checks of `apply`, offline.
pub fn validate(args: &Args) -> Result<()> {
    args.allow("validate", FILE_FLAGS)?;
    let items = load_items(args)?;
    if items.is_empty() {
        println!("No resources specified");
        return Ok(());
    }
    let prepared = prepare_all(&items, None, true).map_err(|e| {
        let err = invalid(Action::Apply, &items, &e).to_string();
        CtlError::Failed(err.replacen("failed to apply", "failed to validate", 1))
    })?;
    match single_kind(prepared.iter().map(|p| p.kind().kind)) {
        Some(k) => println!("Successfully validated {} '{k}' resource(s)", prepared.len()),
        None => println!("Successfully validated {} resource(s)", prepared.len()),
    }
    Ok(())
}
