//! `calicoctl get`'s table columns: the one place that knows each kind's headings (calicoctl's
//! `resourcemgr/*.go` tables) and how a cell is read from the resource. A kind without an entry prints
//! `NAME` (and `NAMESPACE` when namespaced and asked for).
use serde_json::Value;
use std::cell::OnceCell;

/// What a cell may need beyond its resource: the cluster's default AS number (BGPConfiguration `default`,
/// else 64512), read once and only if a cell asks.
pub struct Context<'a> {
    pub default_as: &'a dyn Fn() -> String,
    cached: OnceCell<String>,
}

impl<'a> Context<'a> {
    pub fn new(default_as: &'a dyn Fn() -> String) -> Context<'a> {
        Context { default_as, cached: OnceCell::new() }
    }
    fn default_as(&self) -> &str {
        self.cached.get_or_init(|| (self.default_as)())
    }
}

type Cell = fn(&Value, &Context) -> String;

struct Table {
    kind: &'static str,
    default: &'static [&'static str],
    wide: &'static [&'static str],
    cells: &'static [(&'static str, Cell)],
}

fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn or(v: &Value, pointer: &str, default: &str) -> String {
    match text(v, pointer) {
        s if s.is_empty() => default.to_string(),
        s => s,
    }
}

/// An AS number as calicoctl prints it: plain decimal, also for one written as a string or in asdot.
pub fn as_number(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(match s.split_once('.') {
            Some((hi, lo)) => match (hi.parse::<u32>(), lo.parse::<u32>()) {
                (Ok(hi), Ok(lo)) if hi <= 0xffff && lo <= 0xffff => (hi * 65536 + lo).to_string(),
                _ => s.clone(),
            },
            None => s.parse::<u32>().map(|n| n.to_string()).unwrap_or_else(|_| s.clone()),
        }),
        _ => None,
    }
}

fn name(v: &Value, _: &Context) -> String {
    text(v, "/metadata/name")
}

fn namespace(v: &Value, _: &Context) -> String {
    text(v, "/metadata/namespace")
}

static TABLES: &[Table] = &[
    Table {
        kind: "Node",
        default: &["NAME"],
        wide: &["NAME", "ASN", "IPV4", "IPV6"],
        cells: &[
            ("NAME", name),
            ("ASN", |v, c| match v.pointer("/spec/bgp") {
                Some(Value::Object(bgp)) => bgp.get("asNumber").and_then(as_number).unwrap_or_else(|| format!("({})", c.default_as())),
                _ => String::new(),
            }),
            ("IPV4", |v, _| text(v, "/spec/bgp/ipv4Address")),
            ("IPV6", |v, _| text(v, "/spec/bgp/ipv6Address")),
        ],
    },
    Table {
        kind: "BGPPeer",
        default: &["NAME", "PEERIP", "NODE", "ASN"],
        wide: &["NAME", "PEERIP", "NODE", "ASN"],
        cells: &[
            ("NAME", name),
            ("PEERIP", |v, _| text(v, "/spec/peerIP")),
            ("NODE", |v, _| or(v, "/spec/node", &or(v, "/spec/nodeSelector", "(global)"))),
            ("ASN", |v, _| v.pointer("/spec/asNumber").and_then(as_number).unwrap_or_else(|| "0".into())),
        ],
    },
    Table {
        kind: "BGPConfiguration",
        default: &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        wide: &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        cells: &[
            ("NAME", name),
            ("LOGSEVERITY", |v, _| text(v, "/spec/logSeverityScreen")),
            ("MESHENABLED", |v, _| or(v, "/spec/nodeToNodeMeshEnabled", "-")),
            ("ASNUMBER", |v, _| v.pointer("/spec/asNumber").and_then(as_number).unwrap_or_else(|| "-".into())),
        ],
    },
    Table {
        kind: "IPPool",
        default: &["NAME", "CIDR", "SELECTOR"],
        wide: &["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR", "ASSIGNMENTMODE"],
        cells: &[
            ("NAME", name),
            ("CIDR", |v, _| text(v, "/spec/cidr")),
            ("NAT", |v, _| or(v, "/spec/natOutgoing", "false")),
            ("IPIPMODE", |v, _| or(v, "/spec/ipipMode", "Never")),
            ("VXLANMODE", |v, _| or(v, "/spec/vxlanMode", "Never")),
            ("DISABLED", |v, _| or(v, "/spec/disabled", "false")),
            ("DISABLEBGPEXPORT", |v, _| or(v, "/spec/disableBGPExport", "false")),
            ("SELECTOR", |v, _| text(v, "/spec/nodeSelector")),
            ("ASSIGNMENTMODE", |v, _| or(v, "/spec/assignmentMode", "Automatic")),
        ],
    },
    Table {
        kind: "IPAMConfiguration",
        default: &["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"],
        wide: &["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"],
        cells: &[
            ("NAME", name),
            ("STRICTAFFINITY", |v, _| or(v, "/spec/strictAffinity", "false")),
            ("AUTOALLOCATEBLOCKS", |v, _| or(v, "/spec/autoAllocateBlocks", "true")),
            ("MAXBLOCKSPERHOST", |v, _| or(v, "/spec/maxBlocksPerHost", "0")),
        ],
    },
    Table {
        kind: "WorkloadEndpoint",
        default: &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
        wide: &["NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "PROFILES", "NATS"],
        cells: &[
            ("NAME", name),
            ("NAMESPACE", namespace),
            ("NODE", |v, _| text(v, "/spec/node")),
            ("ORCHESTRATOR", |v, _| text(v, "/spec/orchestrator")),
            ("WORKLOAD", |v, _| or(v, "/spec/workload", &text(v, "/spec/pod"))),
            ("NETWORKS", |v, _| join(v, "/spec/ipNetworks")),
            ("NATS", |v, _| join(v, "/spec/ipNATs")),
            ("PROFILES", |v, _| join(v, "/spec/profiles")),
            ("INTERFACE", |v, _| text(v, "/spec/interfaceName")),
        ],
    },
];

fn join(v: &Value, pointer: &str) -> String {
    let items = v.pointer(pointer).and_then(Value::as_array).cloned().unwrap_or_default();
    items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join(",")
}

const GENERIC: &[(&str, Cell)] = &[("NAME", name), ("NAMESPACE", namespace)];

/// The headings `get` prints for `kind` (`wide`: `-o wide`), NAMESPACE first when `namespaced` output is
/// asked for (`-n`, `-A`).
pub fn headings(kind: &str, wide: bool, with_namespace: bool) -> Vec<String> {
    let base: Vec<&str> = match TABLES.iter().find(|t| t.kind == kind) {
        Some(t) if wide => t.wide.to_vec(),
        Some(t) => t.default.to_vec(),
        None => vec!["NAME"],
    };
    let ns = with_namespace.then_some("NAMESPACE");
    ns.into_iter().chain(base).map(str::to_string).collect()
}

/// The row of `v` under `headings`; an unknown heading (`-o custom-columns=...`) is an error listing the
/// kind's headings.
pub fn row(kind: &str, headings: &[String], v: &Value, ctx: &Context) -> Result<Vec<String>, String> {
    let cells = TABLES.iter().find(|t| t.kind == kind).map_or(GENERIC, |t| t.cells);
    headings
        .iter()
        .map(|h| {
            let found = cells.iter().chain(GENERIC).find(|(name, _)| name == h);
            found.map(|(_, cell)| cell(v, ctx)).ok_or_else(|| {
                let valid: Vec<&str> = cells.iter().map(|(n, _)| *n).collect();
                format!("unknown heading {h}, valid values are: {}", valid.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_like_calicoctls_templates() {
        let as_of = || "64512".to_string();
        let ctx = Context::new(&as_of);
        let h = headings("Node", true, false);
        let node = json!({"metadata": {"name": "node-1"}, "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}});
        assert_eq!(row("Node", &h, &node, &ctx).unwrap(), ["node-1", "(64512)", "10.0.0.1/24", ""]);
        let node = json!({"metadata": {"name": "node-2"}, "spec": {"bgp": {"asNumber": "1.10"}}});
        assert_eq!(row("Node", &h, &node, &ctx).unwrap()[1], "65546");
        assert_eq!(row("Node", &h, &json!({"metadata": {"name": "n"}}), &ctx).unwrap()[1], "", "no BGP spec, no AS");
        let peer = json!({"metadata": {"name": "p"}, "spec": {"peerIP": "192.0.2.1", "asNumber": 64567}});
        assert_eq!(row("BGPPeer", &headings("BGPPeer", false, false), &peer, &ctx).unwrap(), ["p", "192.0.2.1", "(global)", "64567"]);
        let rack = json!({"metadata": {"name": "r"}, "spec": {"nodeSelector": "rack == 'rack-1'"}});
        assert_eq!(row("BGPPeer", &headings("BGPPeer", false, false), &rack, &ctx).unwrap()[2], "rack == 'rack-1'");
        let cfg = json!({"metadata": {"name": "default"}, "spec": {"nodeToNodeMeshEnabled": false}});
        assert_eq!(row("BGPConfiguration", &headings("BGPConfiguration", false, false), &cfg, &ctx).unwrap(), ["default", "", "false", "-"]);
        assert!(row("Node", &["NOPE".into()], &node, &ctx).unwrap_err().contains("valid values are: NAME, ASN"));
    }
}
