//! One module per calicoctl command; `run` parses the command line, dispatches, and reports an error the
//! way calicoctl does (its message alone on stderr, exit 1).
mod crud;
mod get;
mod ipam;
mod label;
mod node;
mod patch;
mod version;

use crate::args::{self, Args};
use crate::config;
use crate::error::{CtlError, Result};

pub const USAGE: &str = "\
calicoctl (calico-rs): manage Calico resources and IPAM in the datastore.

Usage:
  calicoctl create|apply|replace|delete -f FILE|DIR|- [-R] [--skip-empty] [-n NS] [--skip-exists] [--skip-not-exists]
  calicoctl delete KIND NAME... [-n NS] [--skip-not-exists]
  calicoctl get KIND [NAME...] [-o ps|wide|yaml|json|custom-columns=A,B] [-n NS|-A] [--export]
  calicoctl get -f FILE [-o ...]
  calicoctl patch KIND NAME -p PATCH [-t strategic|merge] [-n NS]
  calicoctl label KIND NAME key=value [--overwrite] | key- | key --remove
  calicoctl validate -f FILE|DIR|-
  calicoctl ipam show [--ip IP | --show-blocks | --show-borrowed | --show-configuration] [-o json]
  calicoctl ipam check [--show-all-ips] [--show-problem-ips] [-o REPORT.json|-] [--node N [--valid-ids FILE]]
                       [--network NET] [--links]
  calicoctl ipam release --ip IP [--ip IP...] | --from-report REPORT.json [--force]
  calicoctl ipam configure [--strictaffinity=true|false] [--max-blocks-per-host N] [--auto-allocate-blocks=true|false]
  calicoctl ipam rebuild-index
  calicoctl version [--client]
  calicoctl node status          (as root on the node: the calico-node agent and its BGP sessions)

Kinds: ippool, ipamconfiguration, bgpconfiguration, bgppeer, node, workloadendpoint (and calicoctl's short names).

Datastore (-c/--config FILE, default /etc/calico/calicoctl.cfg, a CalicoAPIConfig; without it the environment):
  DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=URL[,URL] [ETCD_CA_CERT_FILE ETCD_CERT_FILE ETCD_KEY_FILE ETCD_TIMEOUT]
  DATASTORE_TYPE=local [CALICO_LOCAL_STORE_DIR=DIR]   (default; DIR defaults to /var/lib/calico-rs/ipam)
";

/// Runs one command line (without the program name); returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    match dispatch(argv) {
        Ok(()) => 0,
        Err(CtlError::ProblemsFound) => 1,
        Err(e) => {
            if e.is_unavailable() {
                eprintln!("datastore unavailable: {e}");
            } else {
                eprintln!("{e}");
            }
            1
        }
    }
}

fn dispatch(argv: &[String]) -> Result<()> {
    let args = args::parse(argv)?;
    crate::log::init(args.get("log-level"))?;
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    if args.on("help") || matches!(words.as_slice(), [] | ["help", ..]) {
        print!("{USAGE}");
        return Ok(());
    }
    match words.as_slice() {
        ["apply", ..] => crud::file_command(&args, crud::Action::Apply),
        ["create", ..] => crud::file_command(&args, crud::Action::Create),
        ["replace", ..] => crud::file_command(&args, crud::Action::Replace),
        ["delete", ..] => crud::delete(&args),
        ["validate", ..] => crud::validate(&args),
        ["get", ..] => get::run(&args),
        ["patch", ..] => patch::run(&args),
        ["label", ..] => label::run(&args),
        ["version", ..] => version::run(&args),
        ["ipam", rest @ ..] => ipam::run(&args, rest),
        ["node", rest @ ..] => node::run(&args, rest),
        ["datastore", ..] | ["cluster", ..] => Err(CtlError::Unsupported(format!(
            "calicoctl {}: not supported by calico-rs (datastore migration and cluster diagnostics are Kubernetes tools)",
            words[0]
        ))),
        [other, ..] => Err(CtlError::Usage(format!("unknown command {other:?} for \"calicoctl\"\n\n{USAGE}"))),
        [] => Ok(()),
    }
}

/// The datastore `-c` and the environment name, opened.
pub fn open(args: &Args) -> Result<config::Opened> {
    Ok(config::load(args.get("config"), &|k| std::env::var(k).ok())?.open()?)
}

/// "'Kind' " when every resource is of one kind, as calicoctl words its summaries.
pub fn single_kind<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut it = kinds.into_iter();
    let first = it.next()?;
    it.all(|k| k == first).then_some(first)
}
