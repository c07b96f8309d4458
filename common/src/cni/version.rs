//! CNI spec versions: what we support and how a config's `cniVersion` is checked.

/// Every version we accept in a config, oldest first. 0.1.0/0.2.0 are not offered: no maintained runtime sends them.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Newest version: what VERSION reports as our own.
pub const CURRENT: &str = "1.1.0";

/// Layout of a result: 0.3.x/0.4.0 carry `ips[].version`, 1.x does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    V03,
    V04,
    V10,
    V11,
}

pub fn layout(version: &str) -> Option<Layout> {
    match version {
        "0.3.0" | "0.3.1" => Some(Layout::V03),
        "0.4.0" => Some(Layout::V04),
        "1.0.0" => Some(Layout::V10),
        "1.1.0" => Some(Layout::V11),
        _ => None,
    }
}

/// VERSION output: `{"cniVersion": <asked or ours>, "supportedVersions": [...]}`.
pub fn version_info(asked: Option<&str>) -> String {
    let ver = asked.filter(|v| layout(v).is_some()).unwrap_or(CURRENT);
    serde_json::json!({ "cniVersion": ver, "supportedVersions": SUPPORTED }).to_string()
}
