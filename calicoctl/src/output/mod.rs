//! What calicoctl prints: `get`'s output formats (`-o ps` table, `wide`, `custom-columns=`, `yaml`, `json`),
//! the text layouts (`table`), the kinds' columns (`columns`) and the YAML and JSON writers.
pub mod columns;
pub mod json;
pub mod table;
pub mod yaml;

use crate::error::{CtlError, Result};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// `ps` (the default) or `wide`, or the headings of `custom-columns=A,B`.
    Table {
        wide: bool,
        headings: Option<Vec<String>>,
    },
    Yaml,
    Json,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format> {
        Ok(match s.unwrap_or("ps") {
            "ps" => Format::Table { wide: false, headings: None },
            "wide" => Format::Table { wide: true, headings: None },
            "yaml" | "yml" => Format::Yaml,
            "json" => Format::Json,
            other => match other.split_once('=') {
                Some(("custom-columns", "")) => return Err(CtlError::Usage("need to specify at least one column".into())),
                Some(("custom-columns", cols)) => Format::Table { wide: false, headings: Some(cols.split(',').map(str::to_string).collect()) },
                Some(("go-template" | "go-template-file", _)) => {
                    return Err(CtlError::Unsupported(format!("output format {other:?}: Go templates are not supported by calico-rs (use -o json)")))
                }
                _ => return Err(CtlError::Usage(format!("unrecognized output format '{other}'"))),
            },
        })
    }
}

/// One thing `get` prints: a resource, or a list resource (`<Kind>List` with `items`).
pub struct Printable {
    pub kind: &'static str,
    pub value: Value,
}

/// `get`'s output for what it found. Tables: one per printable, each followed by an empty line.
pub fn render(found: &[Printable], format: &Format, with_namespace: bool, ctx: &columns::Context) -> Result<String> {
    match format {
        Format::Yaml | Format::Json => {
            let value = match found {
                [one] => one.value.clone(),
                many => Value::Array(many.iter().map(|p| p.value.clone()).collect()),
            };
            Ok(if *format == Format::Yaml { yaml::to_string(&value) } else { json::to_string(&value, true) })
        }
        Format::Table { wide, headings } => {
            let mut out = String::new();
            for p in found {
                let heads = headings.clone().unwrap_or_else(|| columns::headings(p.kind, *wide, with_namespace));
                let items: Vec<&Value> = match p.value.get("items").and_then(Value::as_array) {
                    Some(items) => items.iter().collect(),
                    None => vec![&p.value],
                };
                let rows = items
                    .iter()
                    .map(|v| columns::row(p.kind, &heads, v, ctx))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(CtlError::Usage)?;
                out.push_str(&table::tabwriter(&heads, &rows));
                out.push('\n');
            }
            Ok(out)
        }
    }
}
