//! `-l/--log-level` (calicoctl's levels; default `panic`, i.e. quiet): logs go to stderr, never stdout, which
//! carries the command's output.
use crate::error::{CtlError, Result};
use tracing::Level;

pub fn init(level: Option<&str>) -> Result<()> {
    let level = match level.unwrap_or("panic") {
        "panic" | "fatal" => return Ok(()),
        "error" => Level::ERROR,
        "warn" | "warning" => Level::WARN,
        "info" => Level::INFO,
        "debug" | "trace" => Level::DEBUG,
        other => {
            return Err(CtlError::Usage(format!("unknown log level: {other}, expected one of: panic, fatal, error, warn, info, debug")));
        }
    };
    let _ = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_target(false).try_init();
    Ok(())
}
