//! `calicoctl ipam show|check|release|configure` (and calico-rs's `rebuild-index`): the operator commands
//! that were cni-ipam's. The domain work (the consistency check, releases, the config's rules, index rebuilds)
//! is cni-ipam's library; these modules read the flags and print.
mod check;
mod configure;
mod release;
mod show;

use super::open;
use crate::args::Args;
use crate::error::{CtlError, Result};
use cni_ipam::ipam::{Block, Ipam, Pool};
use datastore::ipam::block::Attribute;
use datastore::ipam::records::decode;
use datastore::store::{Kind, Store};
use std::net::IpAddr;

pub fn run(args: &Args, words: &[&str]) -> Result<()> {
    match words {
        ["show", ..] => show::run(args),
        ["check", ..] => check::run(args),
        ["release", ..] => release::run(args),
        ["configure", ..] => configure::run(args),
        ["rebuild-index", ..] => {
            args.allow("ipam rebuild-index", &["config"])?;
            let opened = open(args)?;
            let n = cni_ipam::ipam::admin::rebuild_indexes(&mut *opened.datastore().lock()?)?;
            println!("Rebuilt the pool and host indexes from {n} blocks");
            Ok(())
        }
        ["split", ..] => Err(CtlError::Unsupported("calicoctl ipam split is not supported by calico-rs".into())),
        [other, ..] => Err(CtlError::Usage(format!("unknown command {other:?} for \"calicoctl ipam\" (show, check, release, configure)"))),
        [] => Err(CtlError::Usage("calicoctl ipam needs a command: show, check, release or configure".into())),
    }
}

/// Everything `show` and `check` look at, read once: the pools (the implicit default when none is stored)
/// and the live blocks.
pub(crate) struct Snapshot {
    pub pools: Vec<Pool>,
    pub blocks: Vec<Block>,
}

impl Snapshot {
    pub fn read(session: &mut dyn Store) -> Result<Snapshot> {
        let pools = Ipam::new(session)?.pools()?;
        let mut blocks = Vec::new();
        for (key, rec) in session.list(Kind::Block)? {
            let b: Block = decode(&key, &rec.value).map_err(|e| CtlError::Invalid(e.to_string()))?;
            if !b.deleted {
                blocks.push(b);
            }
        }
        Ok(Snapshot { pools, blocks })
    }
}

/// (ip, ordinal, attribute) of every allocation of a block.
pub(crate) fn allocations(b: &Block) -> impl Iterator<Item = (IpAddr, u32, &Attribute)> + '_ {
    b.allocations.iter().enumerate().filter_map(move |(ord, idx)| idx.and_then(|i| b.attributes.get(i)).map(|a| (b.ip(ord as u32), ord as u32, a)))
}

/// Writes `text` to stdout, or to `path` for `-o FILE` (`-` is stdout).
pub(crate) fn write_out(path: Option<&str>, text: &str) -> Result<()> {
    match path {
        None | Some("-") => {
            println!("{text}");
            Ok(())
        }
        Some(file) => std::fs::write(file, text).map_err(|e| CtlError::Input(format!("writing {file}: {e}"))),
    }
}
