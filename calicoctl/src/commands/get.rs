//! `calicoctl get KIND [NAME...]` and `get -f FILE`: resources as calicoctl's tables, YAML or JSON. Without a
//! name, the kind's list resource (`<Kind>List`); with names, each resource (those found are printed, then
//! the ones not found are errors).
use super::crud::load_items;
use super::open;
use crate::args::Args;
use crate::error::{CtlError, Result};
use crate::output::{self, columns, Format, Printable};
use crate::resource::{self, identifier};
use datastore::resources::kinds::{kind_named, KindInfo, BGP_CONFIGURATION};
use datastore::resources::API_VERSION;
use datastore::store::{Key, Store};
use serde_json::{json, Value};

pub fn run(args: &Args) -> Result<()> {
    args.allow("get", &["filename", "recursive", "skip-empty", "config", "namespace", "output", "all-namespaces", "all-namespaces-a", "export"])?;
    let format = Format::parse(args.get("output"))?;
    let all_ns = args.on("all-namespaces") || args.on("all-namespaces-a");
    if all_ns && args.get("namespace").is_some() {
        return Err(CtlError::Usage("cannot use both --namespace and --all-namespaces flags at the same time".into()));
    }
    // What to read: (kind, names; empty = list).
    let wanted: Vec<(&'static KindInfo, Vec<(String, String)>)> = if args.get("filename").is_some() {
        let mut out: Vec<(&'static KindInfo, Vec<(String, String)>)> = Vec::new();
        for item in load_items(args)? {
            let p = resource::prepare_as(&item, args.get("namespace"), false)?;
            let Key::Resource { kind, namespace, name } = p.key else { continue };
            out.push((kind, vec![(namespace, name)]));
        }
        out
    } else {
        let words = args.rest(1);
        let [kind, names @ ..] = words else {
            return Err(CtlError::Usage("calicoctl get needs KIND [NAME...] or -f FILE".into()));
        };
        let kind = kind_named(kind).ok_or_else(|| CtlError::Usage(format!("resource type '{kind}' is not supported")))?;
        if !kind.namespaced && (all_ns || args.get("namespace").is_some()) {
            return Err(CtlError::Usage(format!("{} is not namespaced", kind.kind)));
        }
        if names.iter().any(String::is_empty) {
            return Err(CtlError::Usage("resource name may not be empty".into()));
        }
        if kind.namespaced && all_ns && !names.is_empty() {
            return Err(CtlError::Usage("cannot use --all-namespace flag for getting a single resource".into()));
        }
        let ns = if kind.namespaced { args.get("namespace").unwrap_or("default").to_string() } else { String::new() };
        vec![(kind, names.iter().map(|n| (ns.clone(), n.clone())).collect())]
    };
    let opened = open(args)?;
    let session = opened.datastore().lock()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (kind, names) in &wanted {
        if names.is_empty() {
            let namespace = match (kind.namespaced, all_ns) {
                (true, false) => Some(args.get("namespace").unwrap_or("default")),
                _ => None,
            };
            let items: Vec<Value> = resource::list(&*session, kind, namespace)?.into_iter().map(|s| export(s.value, args.on("export"))).collect();
            let list = json!({"apiVersion": API_VERSION, "kind": format!("{}List", kind.kind), "metadata": {}, "items": items});
            found.push(Printable { kind: kind.kind, value: list });
            continue;
        }
        for (namespace, name) in names {
            let key = Key::Resource { kind, namespace: namespace.clone(), name: name.clone() };
            match resource::get(&*session, &key)? {
                Some(s) => found.push(Printable { kind: kind.kind, value: export(s.value, args.on("export")) }),
                None => missing.push(CtlError::NotFound(identifier(&key)).to_string()),
            }
        }
    }
    let default_as = || default_as_number(&*session);
    let ctx = columns::Context::new(&default_as);
    let with_ns = all_ns || args.get("namespace").is_some();
    if !found.is_empty() || missing.is_empty() {
        let text = output::render(&found, &format, with_ns, &ctx)?;
        print!("{text}");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CtlError::Failed(missing.join("\n")))
    }
}

/// `--export`: without what is particular to this cluster (uid, resourceVersion, creationTimestamp,
/// namespace).
fn export(mut v: Value, on: bool) -> Value {
    if on {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                m.remove(k);
            }
        }
    }
    v
}

/// The AS number nodes without one of their own use, as calicoctl's table shows it in parentheses: the
/// `default` BGPConfiguration's, else Calico's 64512; `unknown` when it cannot be read.
fn default_as_number(store: &dyn Store) -> String {
    match store.get(&Key::resource(&BGP_CONFIGURATION, "default")) {
        Ok(Some(r)) => r.value.to_value().pointer("/spec/asNumber").and_then(columns::as_number).unwrap_or_else(|| "64512".into()),
        Ok(None) => "64512".into(),
        Err(_) => "unknown".into(),
    }
}
