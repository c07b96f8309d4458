//! Reading resource files (`-f FILE`, `-f -` for stdin, `-f DIR`): YAML or JSON, several documents separated
//! by `---` lines, a document holding one resource, a list of them (`kind: List`, `kind: <Kind>List` with
//! `items`) or a JSON/YAML sequence of them. Input calicoctl would refuse is refused here before anything
//! is parsed or written, with its line: a tab in a line's indentation, a key twice in one mapping, more than
//! `MAX_INPUT` bytes in all or a document over `MAX_DOCUMENT` bytes.
use crate::error::{CtlError, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// All input of one command. etcd stores at most 1.5 MiB per request by default, so a real resource file is
/// far below this; the cap keeps a runaway pipe from filling memory.
pub const MAX_INPUT: usize = 16 << 20;
/// One document: a Calico resource is a few KiB; etcd refuses values over 1.5 MiB.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// One resource read from a file, with where it was, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    /// "FILE: document 2" / "FILE: document 1, items[3]".
    pub place: String,
}

fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o
}

/// The parser's error as one line: `line L, column C: what`, `L` counted from `first_line`.
fn yaml_error(e: &serde_saphyr::Error, first_line: usize) -> String {
    let text = e.without_snippet().to_string();
    let text = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    let text = text.split(", set DuplicateKeyPolicy").next().unwrap_or(text);
    match e.location() {
        Some(loc) => {
            let what = text.split_once(": ").filter(|(at, _)| at.starts_with("line ")).map_or(text, |(_, w)| w);
            format!("line {}, column {}: {what}", loc.line() as usize + first_line - 1, loc.column())
        }
        None => text.to_string(),
    }
}

/// One YAML (or JSON) document into `T` (the config file).
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    check_tabs(text, 1)?;
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| yaml_error(&e, 1))
}

/// The text of `-f`: a file, stdin (`-`), or every `.yaml`/`.yml`/`.json` file of a directory (sorted; with
/// `recursive`, of its subdirectories too), each with its name.
pub fn read_sources(path: &str, recursive: bool) -> Result<Vec<(String, String)>> {
    if path == "-" {
        return Ok(vec![("stdin".into(), read_capped(std::io::stdin().lock(), "stdin")?)]);
    }
    let p = Path::new(path);
    if p.is_dir() {
        let mut out = Vec::new();
        collect_dir(p, recursive, &mut out)?;
        return Ok(out);
    }
    let f = std::fs::File::open(p).map_err(|e| CtlError::Input(format!("open {path}: {e}")))?;
    Ok(vec![(path.to_string(), read_capped(f, path)?)])
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<(String, String)>) -> Result<()> {
    let err = |e: std::io::Error| CtlError::Input(format!("reading directory {}: {e}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(err)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                collect_dir(&p, recursive, out)?;
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            let name = p.display().to_string();
            let f = std::fs::File::open(&p).map_err(|e| CtlError::Input(format!("open {name}: {e}")))?;
            out.push((name.clone(), read_capped(f, &name)?));
        }
    }
    Ok(())
}

fn read_capped(r: impl Read, name: &str) -> Result<String> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT as u64 + 1).read_to_end(&mut buf).map_err(|e| CtlError::Input(format!("reading {name}: {e}")))?;
    if buf.len() > MAX_INPUT {
        return Err(CtlError::Input(format!("{name}: more than {} MiB of input; calicoctl reads at most that", MAX_INPUT >> 20)));
    }
    String::from_utf8(buf).map_err(|e| CtlError::Input(format!("{name}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// The documents of one source: (first line number, text), split at `---` lines.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = vec![(1, String::new())];
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            docs.push((i + 2, String::new()));
            // Content after the marker (`--- {"kind": ...}`) belongs to the new document, on its line.
            if let (Some(rest), Some(d)) = (bare.get(4..).filter(|r| !r.trim().is_empty()), docs.last_mut()) {
                d.0 = i + 1;
                d.1.push_str(rest);
                d.1.push('\n');
            }
        } else if let Some(d) = docs.last_mut() {
            d.1.push_str(line);
        }
    }
    docs
}

/// Refuses a tab in the indentation of a block-style line (YAML allows only spaces there), except inside
/// block scalars (`|`, `>`), whose content may hold anything. Flow documents (JSON) may use tabs.
fn check_tabs(doc: &str, first_line: usize) -> std::result::Result<(), String> {
    let content = doc.lines().map(str::trim_start).find(|l| !l.is_empty() && !l.starts_with('#'));
    if content.is_some_and(|l| l.starts_with('{') || l.starts_with('[')) {
        return Ok(());
    }
    let mut scalar_parent: Option<usize> = None;
    for (i, line) in doc.lines().enumerate() {
        let lead: &str = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        let rest = &line[lead.len()..];
        if rest.is_empty() {
            continue;
        }
        let spaces = lead.bytes().take_while(|b| *b == b' ').count();
        if let Some(parent) = scalar_parent {
            if spaces > parent {
                continue;
            }
            scalar_parent = None;
        }
        if lead.contains('\t') && !rest.starts_with('#') {
            return Err(format!(
                "line {}, column {}: a tab is used for indentation; YAML allows only spaces",
                first_line + i,
                lead.find('\t').unwrap_or(0) + 1
            ));
        }
        let code = rest.split(" #").next().unwrap_or(rest).trim_end();
        let indicator = code.trim_end_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
        if indicator.ends_with('|') || indicator.ends_with('>') {
            scalar_parent = Some(spaces);
        }
    }
    Ok(())
}

/// Every resource in one source, in order.
pub fn items(source: &str, text: &str) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    let docs = split_documents(text);
    let several = docs.iter().filter(|(_, d)| !d.trim().is_empty()).count() > 1;
    for (n, (line, doc)) in docs.iter().enumerate() {
        let at = |what: String| CtlError::Input(format!("{source}: {what}"));
        if doc.len() > MAX_DOCUMENT {
            return Err(at(format!("the document at line {line} is {} bytes; a resource may have at most {MAX_DOCUMENT}", doc.len())));
        }
        check_tabs(doc, *line).map_err(at)?;
        let values: Vec<Value> = serde_saphyr::from_multiple_with_options(doc, yaml_options()).map_err(|e| at(yaml_error(&e, *line)))?;
        let place = if several { format!("{source}: document {}", n + 1) } else { source.to_string() };
        for v in values {
            expand(v, &place, &mut out)?;
        }
    }
    Ok(out)
}

/// A resource, a list resource or a sequence of them, as resources.
fn expand(v: Value, place: &str, out: &mut Vec<Item>) -> Result<()> {
    let bad = |what: String| CtlError::Input(format!("{place}: {what}"));
    match v {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                out.push(Item { value: item, place: format!("{place}, [{i}]") });
            }
            Ok(())
        }
        Value::Object(mut o) => {
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(item_kind) = kind.strip_suffix("List") else {
                out.push(Item { value: Value::Object(o), place: place.to_string() });
                return Ok(());
            };
            let items = match o.remove("items") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(bad(format!("items: a {kind} holds a list of resources"))),
            };
            let api_version = o.get("apiVersion").cloned();
            for (i, mut item) in items.into_iter().enumerate() {
                let place = format!("{place}, items[{i}]");
                // A typed list (`BGPPeerList`) may leave its items' kind and apiVersion out.
                if let (false, Some(fields)) = (item_kind.is_empty(), item.as_object_mut()) {
                    match fields.get("kind").and_then(Value::as_str) {
                        None => drop(fields.insert("kind".into(), item_kind.into())),
                        Some(k) if k != item_kind => return Err(CtlError::Input(format!("{place}: kind {k:?} in a {kind}"))),
                        Some(_) => {}
                    }
                    if let (false, Some(v)) = (fields.contains_key("apiVersion"), &api_version) {
                        fields.insert("apiVersion".into(), v.clone());
                    }
                }
                out.push(Item { value: item, place });
            }
            Ok(())
        }
        other => Err(bad(format!("expected a resource (a mapping with apiVersion, kind, metadata and spec), found {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_lists_and_sequences_become_resources() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: a\n---\n# c\n---\nkind: BGPPeerList\napiVersion: projectcalico.org/v3\nitems:\n- metadata:\n    name: b\n--- {\"kind\": \"List\", \"items\": [{\"kind\": \"Node\", \"metadata\": {\"name\": \"n\"}}]}\n";
        let items = items("f.yaml", text).unwrap();
        let names: Vec<&str> = items.iter().map(|i| i.value["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "n"]);
        assert_eq!(items[1].value["kind"], "BGPPeer");
        assert_eq!(items[1].value["apiVersion"], "projectcalico.org/v3");
        assert_eq!(items[1].place, "f.yaml: document 3, items[0]");
        let seq = super::items("-", "[{\"kind\": \"Node\"},\n\t{\"kind\": \"IPPool\"}]").unwrap();
        assert_eq!(seq.len(), 2, "JSON may use tabs");
        assert_eq!(seq[1].value, json!({"kind": "IPPool"}));
    }

    #[test]
    fn tabs_duplicates_and_size_are_refused_with_their_line() {
        let err = items("f", "kind: Node\nmetadata:\n  name: a\n---\nkind: Node\nmetadata:\n\tname: b\n").unwrap_err().to_string();
        assert!(err.contains("f: line 7, column 1") && err.contains("tab"), "{err}");
        let err = items("f", "kind: Node\nmetadata:\n  \tname: b\n").unwrap_err().to_string();
        assert!(err.contains("line 3, column 3") && err.contains("tab"), "{err}");
        let err = items("f", "kind: Node\n---\nkind: Node\nmetadata:\n  name: a\n  name: b\n").unwrap_err().to_string();
        assert_eq!(err, "f: line 6, column 3: duplicate mapping key: name");
        let big = format!("kind: Node\nmetadata:\n  annotations:\n    a: {}\n", "x".repeat(MAX_DOCUMENT));
        let err = items("f", &big).unwrap_err().to_string();
        assert!(err.contains("a resource may have at most"), "{err}");
        assert!(items("f", "a: |\n  \tliteral tab\nb: 1\n").is_ok(), "a block scalar may hold tabs");
        assert!(items("f", "a: [1, 2\n").is_err());
    }
}
