//! Resources as YAML the way calicoctl prints them (`sigs.k8s.io/yaml`, i.e. go-yaml v2 over the JSON form):
//! keys in go-yaml's order (digit runs compared as numbers, other characters before letters), two-space
//! indentation, sequences under a key not indented, a string quoted only when it would otherwise read as
//! something else (a number, `true`, `null`, a timestamp: double quotes) or is not a valid plain scalar
//! (single quotes; double with characters that need escapes), long plain and single-quoted strings
//! folded at spaces past column 80, strings with line breaks as literal blocks.
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::fmt::Write;

const WIDTH: usize = 80;

pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0, false),
        other => {
            inline(&mut out, other, 0, 0);
            out.push('\n');
        }
    }
    out
}

/// A mapping whose keys start at column `indent`; `inline`: the first key follows a `- ` already written.
fn map(out: &mut String, m: &Map<String, Value>, indent: usize, inline_first: bool) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by(|a, b| key_order(a, b));
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        let key = scalar(k, true, indent, indent);
        out.push_str(&key);
        out.push(':');
        match &m[k] {
            Value::Object(child) if !child.is_empty() => {
                out.push('\n');
                map(out, child, indent + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                seq(out, items, indent, false);
            }
            value => {
                out.push(' ');
                let column = indent + key.chars().count() + 2;
                inline(out, value, indent + 2, column);
                out.push('\n');
            }
        }
    }
}

fn seq(out: &mut String, items: &[Value], indent: usize, inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => map(out, m, indent + 2, true),
            Value::Array(a) if !a.is_empty() => seq(out, a, indent + 2, true),
            value => {
                inline(out, value, indent + 2, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// A value on the line already started (at `column`); continuation lines at `indent`.
fn inline(out: &mut String, v: &Value, indent: usize, column: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&scalar(s, false, indent, column)),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// go-yaml v2's key order.
fn key_order(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn) = (0u128, 0u128);
        if ar[i] == '0' || br[i] == '0' {
            // A zero inside a number (the digits before it are not all zeros) counts as part of it.
            if ar[..i].iter().rev().take_while(|c| c.is_ascii_digit()).any(|c| *c != '0') {
                an = 1;
                bn = 1;
            }
        }
        let digits = |r: &[char], n: &mut u128| {
            let mut j = i;
            while j < r.len() && r[j].is_ascii_digit() {
                *n = n.saturating_mul(10).saturating_add(u128::from(r[j] as u8 - b'0'));
                j += 1;
            }
            j
        };
        let (ai, bi) = (digits(&ar, &mut an), digits(&br, &mut bn));
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

/// Whether go-yaml would read the plain text as something other than a string.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False",
        "FALSE", "on", "On", "ON", "off", "Off", "OFF", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN",
        ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || first == '-' || first == '+' || first == '.') {
        return false;
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    is_go_int(&plain) || is_yaml_float(&plain) || is_base60_float(s) || (first.is_ascii_digit() && is_timestamp(s))
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint` would accept it (any size: a longer one is a float).
fn is_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let all = |d: &str, radix: u32| !d.is_empty() && d.chars().all(|c| c.is_digit(radix));
    if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return all(h, 16);
    }
    if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        return all(o, 8);
    }
    if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        return all(b, 2);
    }
    if body.len() > 1 && body.starts_with('0') {
        return all(body, 8);
    }
    all(body, 10)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let mant_ok = match mant.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mant),
    };
    mant_ok && exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)))
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (YAML 1.1 sexagesimal, e.g. `1:20`).
fn is_base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or_default();
    let head_ok = head.starts_with(|c: char| c.is_ascii_digit()) && head.chars().all(|c| c.is_ascii_digit() || c == '_');
    let rest: Vec<&str> = parts.collect();
    let rest_ok = !rest.is_empty()
        && rest.iter().all(|p| {
            let b = p.as_bytes();
            match b.len() {
                1 => b[0].is_ascii_digit(),
                2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
                _ => false,
            }
        });
    head_ok && rest_ok && frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit() || c == '_'))
}

/// go-yaml's timestamp forms: `2006-1-2`, `2006-1-2T15:4:5[.frac][Z|±07:00]` (also `t` or a space).
fn is_timestamp(s: &str) -> bool {
    let num = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit());
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 || !num(d[0], 4) || !num(d[1], 2) || !num(d[2], 2) {
        return false;
    }
    let Some(time) = time else { return true };
    let (clock, zone) = match time.find(['Z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, ""),
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let t: Vec<&str> = hms.split(':').collect();
    let zone_ok = match zone {
        "" | "Z" => true,
        z => {
            let z = &z[1..];
            let (h, m) = z.split_once(':').unwrap_or((z, "00"));
            num(h, 2) && num(m, 2)
        }
    };
    t.len() == 3 && t.iter().all(|p| num(p, 2)) && frac.is_none_or(|f| num(f, 9)) && zone_ok
}

/// libyaml's `is_printable`.
fn printable(c: char) -> bool {
    let v = c as u32;
    v == 0x0A
        || (0x20..=0x7E).contains(&v)
        || v == 0x85
        || (0xA0..=0xD7FF).contains(&v)
        || ((0xE000..=0xFFFD).contains(&v) && v != 0xFEFF)
        || (0x10000..=0x10FFFF).contains(&v)
}

/// What libyaml's emitter allows for `s` (its `analyze_scalar`): (plain in block context, single-quoted,
/// literal block).
fn allowed_styles(s: &str) -> (bool, bool, bool) {
    let chars: Vec<char> = s.chars().collect();
    let (mut block_indicators, mut special, mut line_breaks) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) = (false, false, false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_whitespace = next.is_none_or(|n| n == ' ' || n == '\t' || n == '\n' || n == '\r');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !printable(c) {
            special = true;
        }
        let is_break = c == '\n' || c == '\r' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}';
        if is_break {
            line_breaks = true;
        }
        let last = i + 1 == chars.len();
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break {
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= previous_space;
            previous_break = true;
            previous_space = false;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = c == ' ' || c == '\t' || is_break;
    }
    let mut plain = !(leading_space || leading_break || trailing_space || trailing_break);
    let mut single = true;
    let mut block = !trailing_space;
    if break_space {
        plain = false;
        single = false;
    }
    if space_break || special {
        plain = false;
        single = false;
        block = false;
    }
    if line_breaks || block_indicators {
        plain = false;
    }
    (plain, single, block)
}

/// A string as go-yaml writes it; `key`: a mapping key (never folded, never a block).
fn scalar(s: &str, key: bool, indent: usize, column: usize) -> String {
    let (plain_ok, single_ok, block_ok) = allowed_styles(s);
    if s.contains('\n') && !key && block_ok {
        return literal(s, indent);
    }
    if !resolves_to_non_string(s) && !s.contains('\n') && plain_ok && !s.is_empty() {
        return folded(s, key, indent, column, false);
    }
    if !resolves_to_non_string(s) && !s.contains('\n') && single_ok {
        return folded(s, key, indent, column, true);
    }
    double_quoted(s)
}

/// Plain or single-quoted text, broken at a single space once past the line width.
fn folded(s: &str, key: bool, indent: usize, column: usize, quoted: bool) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut col = column;
    if quoted {
        out.push('\'');
        col += 1;
    }
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_space = chars.get(i + 1) == Some(&' ');
            let inner = !quoted || (i != 0 && i + 1 != chars.len());
            if !key && !spaces && col > WIDTH && inner && !next_space && i + 1 < chars.len() {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                col = indent;
            } else {
                out.push(' ');
                col += 1;
            }
            spaces = true;
            continue;
        }
        spaces = false;
        if quoted && c == '\'' {
            out.push_str("''");
            col += 2;
        } else {
            out.push(c);
            col += 1;
        }
    }
    if quoted {
        out.push('\'');
    }
    out
}

fn literal(s: &str, indent: usize) -> String {
    let mut out = String::from("|");
    if s.starts_with(' ') || s.starts_with('\n') {
        out.push('2');
    }
    if !s.ends_with('\n') {
        out.push('-');
    } else if s == "\n" || s.ends_with("\n\n") {
        out.push('+');
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
        }
    }
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_resource_prints_as_calicoctl_prints_it() {
        let v = json!({"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "peer-with-route-reflectors", "resourceVersion": "1234", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "uid": "3f2b-11", "labels": {"node10": "a", "node9": "b", "a_b": "x", "aB": "y"}},
            "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'", "asNumber": 64567, "filters": [],
                     "keepOriginalNextHop": false, "node": "", "other": "!has(x)", "list": ["a", {"b": 1, "a": "yes"}]}});
        let want = "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  creationTimestamp: \"2026-01-01T00:00:00Z\"
  labels:
    a_b: x
    aB: \"y\"
    node9: b
    node10: a
  name: peer-with-route-reflectors
  resourceVersion: \"1234\"
  uid: 3f2b-11
spec:
  asNumber: 64567
  filters: []
  keepOriginalNextHop: false
  list:
  - a
  - a: \"yes\"
    b: 1
  node: \"\"
  nodeSelector: all()
  other: '!has(x)'
  peerSelector: route-reflector == 'true'
";
        assert_eq!(to_string(&v), want);
    }

    #[test]
    fn strings_are_quoted_only_when_they_must_be() {
        let s = |x: &str| scalar(x, false, 2, 10);
        for plain in ["10.0.0.0/16", "rack == 'rack-1'", "has(a) && b in {'x', 'y'}", "fd00::/48", "a:b", "node-1", "1.2.3.4", "-x", "x#y"] {
            assert_eq!(s(plain), plain, "{plain}");
        }
        for (x, want) in [
            ("64512", "\"64512\""),
            ("1.10", "\"1.10\""),
            ("true", "\"true\""),
            ("on", "\"on\""),
            ("", "\"\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("2026-01-01", "\"2026-01-01\""),
            ("!has(x)", "'!has(x)'"),
            ("it's: x", "'it''s: x'"),
            ("a: b", "'a: b'"),
            ("- a", "'- a'"),
            (" lead", "' lead'"),
            ("a #b", "'a #b'"),
            ("tab\there", "\"tab\\there\""),
        ] {
            assert_eq!(s(x), want, "{x}");
        }
        assert_eq!(scalar("line one\nline two\n", false, 4, 10), "|\n    line one\n    line two");
        assert_eq!(scalar("no newline\nat end", false, 2, 10), "|-\n  no newline\n  at end");
        let long = "has(a) && has(b) && has(c) && has(d) && has(e) && has(f) && has(g) && has(h) && has(i) && has(j)";
        let folded = scalar(long, false, 2, 16);
        assert!(folded.contains("\n  ") && folded.replace("\n  ", " ") == long, "{folded}");
        assert!(folded.lines().next().is_some_and(|l| l.len() + 16 > WIDTH), "{folded}");
    }
}
