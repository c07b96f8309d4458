//! `calicoctl node ...`: `node status` is reserved for the node agent (calico-node, the next issue), which
//! owns the BGP sessions it would report; the other node commands run or inspect a calico/node container.
use crate::args::Args;
use crate::error::{CtlError, Result};

pub fn run(args: &Args, words: &[&str]) -> Result<()> {
    args.allow("node", &["config"])?;
    match words {
        ["status", ..] => Err(CtlError::Unsupported(
            "calicoctl node status needs the calico-rs node agent (calico-node, which runs BIRD and owns the BGP sessions); \
             it is not part of this release yet, so there is no BGP status to show"
                .into(),
        )),
        [other, ..] => {
            Err(CtlError::Unsupported(format!("calicoctl node {other}: not supported by calico-rs (it manages the calico/node container)")))
        }
        [] => Err(CtlError::Usage("calicoctl node needs a subcommand (status)".into())),
    }
}
