//! `calicoctl ipam configure --strictaffinity=true|false [--max-blocks-per-host N]` (and calico-rs's
//! `--auto-allocate-blocks`): a read-modify-write of the IPAM config under Calico's cross-field rules
//! (cni-ipam's `update_config`, which keeps the IPAMConfiguration resource in step when one is stored).
use crate::args::Args;
use crate::commands::open;
use crate::error::{CtlError, Result};
use cni_ipam::ipam::admin::update_config;

pub fn run(args: &Args) -> Result<()> {
    args.allow(
        "ipam configure",
        &["config", "strictaffinity", "max-blocks-per-host", "auto-allocate-blocks", "kubevirt-ip-persistence", "ip-cooldown-seconds"],
    )?;
    for unsupported in ["kubevirt-ip-persistence", "ip-cooldown-seconds"] {
        if args.get(unsupported).is_some() {
            return Err(CtlError::Unsupported(format!("--{unsupported} is not supported by calico-rs (no KubeVirt, no address cooldown)")));
        }
    }
    let boolean = |flag: &str, msg: &str| args.get(flag).map(|v| v.parse::<bool>().map_err(|_| CtlError::Usage(msg.into()))).transpose();
    let strict = boolean("strictaffinity", "invalid value. Use true or false to set strictaffinity")?;
    let auto = boolean("auto-allocate-blocks", "invalid value. Use true or false to set auto-allocate-blocks")?;
    let max = args
        .get("max-blocks-per-host")
        .map(|v| v.parse::<u32>().map_err(|_| CtlError::Usage("invalid value for maxblockhost. Use a valid number".into())))
        .transpose()?;
    if strict.is_none() && auto.is_none() && max.is_none() {
        return Err(CtlError::Usage("at least one configuration option must be specified".into()));
    }
    let opened = open(args)?;
    update_config(&mut *opened.datastore().lock()?, |cfg| {
        if let Some(v) = strict {
            cfg.strict_affinity = v;
        }
        if let Some(v) = auto {
            cfg.auto_allocate_blocks = v;
        }
        if let Some(v) = max {
            cfg.max_blocks_per_host = v;
        }
    })
    .map_err(|e| CtlError::Failed(format!("error: {e}")))?;
    if let Some(v) = strict {
        println!("Successfully set StrictAffinity to: {v}");
    }
    if let Some(v) = max {
        println!("Successfully set MaxBlocksPerHost to: {v}");
    }
    if let Some(v) = auto {
        println!("Successfully set AutoAllocateBlocks to: {v}");
    }
    Ok(())
}
