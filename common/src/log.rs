//! Logging: `tracing` to the file named by the config's `log_file_path`, never to stdout (stdout is the result).
use std::path::Path;

/// Starts file logging at `level` (Calico's names: debug, info, warning, error; others mean info).
/// Without a path nothing is logged; a file that cannot be opened is reported on stderr and ignored.
pub fn init(path: Option<&Path>, level: Option<&str>) {
    let Some(path) = path else { return };
    let level = match level.unwrap_or("info").to_ascii_lowercase().as_str() {
        "debug" | "trace" => tracing::Level::DEBUG,
        "warn" | "warning" => tracing::Level::WARN,
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => {
            let _ = tracing_subscriber::fmt().with_writer(std::sync::Mutex::new(file)).with_max_level(level).with_ansi(false).try_init();
        }
        Err(e) => eprintln!("cannot open log file {}: {e}", path.display()),
    }
}

/// Reads `log_file_path` / `log_level` from a network config (top level, as Calico does).
pub fn init_from_config(config: &serde_json::Value) {
    let path = config["log_file_path"].as_str().filter(|s| !s.is_empty()).map(Path::new);
    init(path, config["log_level"].as_str());
}
