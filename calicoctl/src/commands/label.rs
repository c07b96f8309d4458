//! `calicoctl label KIND NAME key=value [--overwrite]`, and removal as `key-` (kubectl's spelling) or
//! `key --remove` (calicoctl's). The resource is written back at the revision it was read at.
use super::open;
use crate::args::Args;
use crate::error::{CtlError, Result};
use crate::input::Item;
use crate::resource::{self, identifier};
use datastore::resources::kinds::kind_named;
use datastore::store::Key;
use serde_json::{Map, Value};

pub fn run(args: &Args) -> Result<()> {
    args.allow("label", &["config", "namespace", "overwrite", "remove"])?;
    let [kind_word, name, label] = args.rest(1) else {
        return Err(CtlError::Usage("calicoctl label takes KIND NAME key=value (or key- to remove it)".into()));
    };
    let kind = kind_named(kind_word).ok_or_else(|| CtlError::Usage(format!("resource type '{kind_word}' is not supported")))?;
    let (key_name, value) = if args.on("remove") {
        (label.clone(), None)
    } else if let Some(k) = label.strip_suffix('-').filter(|_| !label.contains('=')) {
        (k.to_string(), None)
    } else {
        let (k, v) = label.split_once('=').ok_or_else(|| CtlError::Usage(format!("invalid label {label}")))?;
        (k.to_string(), Some(v.to_string()))
    };
    let namespace = if kind.namespaced { args.get("namespace").unwrap_or("default").to_string() } else { String::new() };
    let key = Key::Resource { kind, namespace: namespace.clone(), name: name.clone() };
    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    let current = resource::get(&*session, &key)?
        .ok_or_else(|| CtlError::Failed(format!("failed to get {kind_word} {name}, error {}", CtlError::NotFound(identifier(&key)))))?;
    let mut doc = current.value;
    let meta =
        doc.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| CtlError::Invalid(format!("{}: no metadata", identifier(&key))))?;
    let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    let labels = labels.as_object_mut().ok_or_else(|| CtlError::Invalid(format!("{}: metadata.labels is not a mapping", identifier(&key))))?;
    let message = match value {
        None => {
            if labels.remove(&key_name).is_none() {
                return Err(CtlError::Failed(format!("cannot remove label of {kind_word} {name}, key {key_name} does not exist")));
            }
            format!("Successfully removed label {key_name} from {kind_word} {name}")
        }
        Some(v) => match labels.get(&key_name).and_then(Value::as_str) {
            Some(old) if old != v && !args.on("overwrite") => {
                return Err(CtlError::Failed(format!(
                    "failed to update label of {kind_word} {name}, key {key_name} is already present. please use '--overwrite' to set a new value"
                )));
            }
            Some(_) => {
                labels.insert(key_name.clone(), v.into());
                format!("Successfully updated label {key_name} on {kind_word} {name}")
            }
            None => {
                labels.insert(key_name.clone(), v.into());
                format!("Successfully set label {key_name} on {kind_word} {name}")
            }
        },
    };
    let item = Item { value: doc, place: identifier(&key) };
    let prepared = resource::prepare(&item, (!namespace.is_empty()).then_some(namespace.as_str()))
        .map_err(|e| CtlError::Failed(format!("failed to update {kind_word} {name}, label not changed: {e}")))?;
    resource::update(&mut *session, &prepared)
        .map_err(|e| CtlError::Failed(format!("failed to update {kind_word} {name}, label not changed: {e}")))?;
    println!("{message}");
    Ok(())
}
