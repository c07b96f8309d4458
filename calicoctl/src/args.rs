//! The command line, parsed the way calicoctl's (cobra/pflag) parser reads it: `--name value`, `--name=value`,
//! `-n value`, `-nvalue`, `-n=value`, boolean flags alone or as `--flag=true|false`, `--` ends the flags, and
//! flags may stand anywhere among the words. Each command says which flags it takes (`Args::allow`).
use crate::error::{CtlError, Result};
use std::collections::BTreeMap;

pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// Takes a value (else a boolean).
    pub value: bool,
}

const fn v(long: &'static str, short: Option<char>) -> Flag {
    Flag { long, short, value: true }
}
const fn b(long: &'static str, short: Option<char>) -> Flag {
    Flag { long, short, value: false }
}

/// Every flag any command takes; a command's own list is checked after parsing.
pub static FLAGS: &[Flag] = &[
    v("config", Some('c')),
    v("log-level", Some('l')),
    v("context", None),
    b("allow-version-mismatch", None),
    b("help", Some('h')),
    v("filename", Some('f')),
    b("recursive", Some('R')),
    b("skip-empty", None),
    v("namespace", Some('n')),
    b("skip-exists", None),
    b("skip-not-exists", Some('s')),
    v("output", Some('o')),
    b("all-namespaces", Some('A')),
    b("all-namespaces-a", Some('a')),
    b("export", None),
    v("patch", Some('p')),
    v("type", Some('t')),
    b("overwrite", None),
    b("remove", None),
    b("client", None),
    v("poll", None),
    v("ip", None),
    b("show-blocks", None),
    b("show-borrowed", None),
    b("show-configuration", None),
    b("show-all-ips", None),
    b("show-problem-ips", None),
    v("kubeconfig", None),
    v("from-report", None),
    b("force", None),
    v("strictaffinity", None),
    v("max-blocks-per-host", None),
    v("auto-allocate-blocks", None),
    v("kubevirt-ip-persistence", None),
    v("ip-cooldown-seconds", None),
    v("node", None),
    v("valid-ids", None),
    v("network", None),
    b("links", None),
];

/// The flags every command takes (calicoctl's persistent flags).
pub const GLOBAL: &[&str] = &["log-level", "context", "allow-version-mismatch", "help"];

pub struct Args {
    /// The words that are not flags, in order (the command, its subcommand, its arguments).
    pub words: Vec<String>,
    flags: BTreeMap<&'static str, Vec<String>>,
    /// How each flag was written, for error messages.
    spelled: BTreeMap<&'static str, String>,
}

fn find_long(name: &str) -> Result<&'static Flag> {
    FLAGS.iter().find(|f| f.long == name).ok_or_else(|| CtlError::Usage(format!("unknown flag: --{name}")))
}

fn find_short(c: char, arg: &str) -> Result<&'static Flag> {
    FLAGS.iter().find(|f| f.short == Some(c)).ok_or_else(|| CtlError::Usage(format!("unknown shorthand flag: '{c}' in {arg}")))
}

pub fn parse(argv: &[String]) -> Result<Args> {
    let mut args = Args { words: Vec::new(), flags: BTreeMap::new(), spelled: BTreeMap::new() };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            args.words.extend(it.by_ref().cloned());
            break;
        }
        let (flag, inline) = if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            (find_long(name)?, value)
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or('-');
            let rest = chars.as_str();
            let value = match rest {
                "" => None,
                r => Some(r.strip_prefix('=').unwrap_or(r).to_string()),
            };
            (find_short(c, a)?, value)
        } else {
            args.words.push(a.clone());
            continue;
        };
        let value = match (flag.value, inline) {
            (true, Some(v)) => v,
            (true, None) => it.next().cloned().ok_or_else(|| CtlError::Usage(format!("flag needs an argument: {a}")))?,
            (false, None) => "true".to_string(),
            (false, Some(v)) => match v.as_str() {
                "true" | "false" => v,
                _ => return Err(CtlError::Usage(format!("invalid argument {v:?} for {a}: must be true or false"))),
            },
        };
        args.spelled.insert(flag.long, a.split('=').next().unwrap_or(a).to_string());
        args.flags.entry(flag.long).or_default().push(value);
    }
    Ok(args)
}

impl Args {
    /// Refuses flags the command does not take (besides the global ones), as cobra does.
    pub fn allow(&self, command: &str, flags: &[&str]) -> Result<()> {
        for name in self.flags.keys() {
            if !flags.contains(name) && !GLOBAL.contains(name) {
                let spelled = self.spelled.get(name).cloned().unwrap_or_else(|| format!("--{name}"));
                return Err(CtlError::Usage(format!("unknown flag: {spelled} (for {command})")));
            }
        }
        Ok(())
    }

    /// The last value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.flags.get(name).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
    }

    /// A boolean flag (absent: false).
    pub fn on(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    /// The positional words after the command words.
    pub fn rest(&self, skip: usize) -> &[String] {
        self.words.get(skip..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Args {
        parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_are_read_as_pflag_reads_them() {
        let a = p(&["get", "-oyaml", "nodes", "--namespace=x", "-c", "/f", "node-1", "--export", "-A=false"]);
        assert_eq!(a.words, ["get", "nodes", "node-1"]);
        assert_eq!((a.get("output"), a.get("namespace"), a.get("config")), (Some("yaml"), Some("x"), Some("/f")));
        assert!(a.on("export") && !a.on("all-namespaces"));
        let a = p(&["ipam", "release", "--ip", "10.0.0.1", "--ip=10.0.0.2", "--", "-x"]);
        assert_eq!(a.all("ip"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(a.words, ["ipam", "release", "-x"]);
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert!(parse(&["-o".to_string()]).is_err());
        assert!(parse(&["--overwrite=maybe".to_string()]).is_err());
        assert!(p(&["get", "--export"]).allow("get", &["output"]).is_err());
    }
}
