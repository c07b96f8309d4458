//! The agent's Felix half (issue 14): from the model's nodes, pools and blocks, the `dataplane` crate's route
//! plan applied to the kernel (VXLAN devices, routes of the agent's protocol, neighbours, FDB entries),
//! natOutgoing in the agent's nftables table, and the pod MTU in `<lib dir>/mtu`. Each pass changes only the
//! difference; the nft script and the MTU file are rewritten only when they would change.
use crate::agent::Model;
use crate::settings::Settings;
use common::netlink::Netlink;
use dataplane::device::IpipStatus;
use dataplane::{mtu, nat, BlockInfo, Inputs, NodeInfo, Options};
use datastore::resources::ippool::{Pool, PoolSpec};
use datastore::resources::node::NodeSpec;
use datastore::resources::validate;
use datastore::store::Key;
use tracing::{info, warn};

#[derive(Default)]
pub struct Routing {
    nl: Option<Netlink>,
    /// The nft script last applied.
    nat: Option<String>,
    mtu: Option<u32>,
    /// The plan's warnings last logged (logged again only when they change).
    warnings: Vec<String>,
    failed: Vec<String>,
    /// The inputs of the last pass that programmed everything it planned: a pass with the same inputs has
    /// nothing to do (most block changes are allocations, which move no route), so it is skipped.
    last: Option<(Vec<NodeInfo>, Vec<Pool>, Vec<BlockInfo>)>,
    last_outcome: Outcome,
}

/// What a pass reports to the state file.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ipip: Option<String>,
    /// The pools' routes BIRD must leave to the agent.
    pub bird_kernel_rejects: Vec<ipnet::IpNet>,
}

/// The routing inputs in the model: every node, every valid pool, every block (decoded as it arrived).
pub fn inputs(model: &Model) -> (Vec<NodeInfo>, Vec<Pool>, Vec<BlockInfo>) {
    let (mut nodes, mut pools) = (Vec::new(), Vec::new());
    for (key, record) in model.records.values() {
        match key {
            Key::Resource { kind, .. } if kind.kind == datastore::resources::node::KIND => {
                match validate::parse::<NodeSpec>(&record.value.to_value()) {
                    Ok(n) => nodes.push(NodeInfo::from_node(&n)),
                    Err(e) => warn!(key = %key, error = %e, "node left out of routing"),
                }
            }
            Key::Resource { kind, .. } if kind.kind == datastore::resources::ippool::KIND => {
                match validate::parse::<PoolSpec>(&record.value.to_value()) {
                    Ok(p) => match Pool::from_spec(&p.metadata.name, &p.spec) {
                        Ok(pool) => pools.push(pool),
                        Err(e) => warn!(key = %key, error = ?e, "pool left out of routing"),
                    },
                    Err(e) => warn!(key = %key, error = %e, "pool left out of routing"),
                }
            }
            _ => {}
        }
    }
    (nodes, pools, model.blocks.values().cloned().collect())
}

impl Routing {
    pub fn sync(&mut self, s: &Settings, model: &Model) -> Outcome {
        let (nodes, pools, blocks) = inputs(model);
        if let Some((n, p, b)) = &self.last {
            if *n == nodes && *p == pools && *b == blocks {
                return self.last_outcome.clone();
            }
        }
        let plan = dataplane::plan(&Inputs { node: &s.node_name, nodes: &nodes, pools: &pools, blocks: &blocks, backend: s.backend, vxlan: s.vxlan });
        if plan.warnings != self.warnings {
            for w in &plan.warnings {
                warn!("routing: {w}");
            }
            self.warnings = plan.warnings.clone();
        }
        let mut outcome = Outcome { ipip: None, bird_kernel_rejects: plan.bird_kernel_rejects.clone() };
        let mut complete = true;
        let nl = match self.nl.as_mut() {
            Some(nl) => nl,
            None => match Netlink::open() {
                Ok(nl) => self.nl.insert(nl),
                Err(e) => {
                    warn!(error = %e, "netlink: routing not programmed");
                    return outcome;
                }
            },
        };
        let host_mtu = match nl.links() {
            Ok(links) => mtu::host_mtu(&links),
            Err(e) => {
                warn!(error = %e, "netlink: links not read");
                return outcome;
            }
        };
        match dataplane::apply(nl, &plan, &Options::with(host_mtu, &s.tunnel_mtu)) {
            Ok(report) => {
                if report.changes() > 0 {
                    info!(?report, "routing programmed");
                }
                complete &= report.failed.is_empty() && report.skipped.is_empty();
                if report.failed != self.failed {
                    for f in &report.failed {
                        warn!("routing: {f}");
                    }
                    self.failed = report.failed.clone();
                }
                outcome.ipip = match report.ipip {
                    IpipStatus::NotNeeded => None,
                    IpipStatus::Ready { .. } => Some("tunl0 ready".into()),
                    IpipStatus::Unavailable { reason } => {
                        Some(format!("unsupported: this kernel cannot make IPIP devices ({reason}); IPIP routes are not programmed"))
                    }
                };
            }
            Err(e) => {
                complete = false;
                warn!(error = %e, "routing not programmed");
            }
        }
        if s.backend != dataplane::Backend::None {
            let script = nat::render(&pools);
            if self.nat.as_deref() != Some(script.as_str()) {
                match nat::run_nft(&script) {
                    Ok(()) => self.nat = Some(script),
                    Err(e) => {
                        complete = false;
                        warn!(error = %e, "natOutgoing not programmed");
                    }
                }
            }
        }
        let pod_mtu = mtu::pod_mtu(host_mtu, &mtu::tunnels(&pools), &s.tunnel_mtu);
        if self.mtu != Some(pod_mtu) {
            match mtu::write_mtu_file(&s.lib_dir.join("mtu"), pod_mtu) {
                Ok(()) => {
                    info!(mtu = pod_mtu, "pod MTU written");
                    self.mtu = Some(pod_mtu);
                }
                Err(e) => {
                    complete = false;
                    warn!(error = %e, "pod MTU file not written");
                }
            }
        }
        self.last = complete.then_some((nodes, pools, blocks));
        self.last_outcome = outcome.clone();
        outcome
    }

    /// A pass that reads the kernel whatever the inputs (the periodic refresh): routes, neighbours, FDB
    /// entries and devices of the agent's that went missing come back, and so does the MTU file if its content
    /// changed. The nft table is left as the last pass made it (an atomic rebuild each time would only churn).
    pub fn refresh(&mut self, s: &Settings, model: &Model) -> Outcome {
        self.last = None;
        let file = std::fs::read_to_string(s.lib_dir.join("mtu")).ok();
        if file.as_deref().map(str::trim) != self.mtu.map(|m| m.to_string()).as_deref() {
            self.mtu = None;
        }
        self.sync(s, model)
    }

    /// On shutdown: the natOutgoing tables go (routes stay, so pods keep talking while the agent is away).
    pub fn shutdown(&mut self) {
        if self.nat.is_some() {
            if let Err(e) = nat::remove() {
                warn!(error = %e, "natOutgoing tables not removed");
            }
        }
    }
}
