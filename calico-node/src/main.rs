//! `calico-node`: the per-node agent. Configured by the environment as Calico's calico-node is (see
//! `settings`); logs to stderr; runs until SIGTERM (or SIGINT). Startup: settings, the node's addresses,
//! its Node resource and `bgpconfigurations/default`, BIRD started (or adopted) with the first config, and
//! `/var/lib/calico/nodename` written last. Exit codes: 0 after a signal, 1 when startup fails, a datastore
//! that does not answer included (its supervisor, systemd or a DaemonSet, starts it again) unless
//! `WAIT_FOR_DATASTORE=true`, as in Calico's manifests: then it waits, retrying every second, until the
//! datastore answers or a signal stops it. Once running, the agent rides out an outage (routes and sessions
//! stay, the watch resumes).
use calico_node::agent::{self, Agent, Event, Model};
use calico_node::autodetect;
use calico_node::register::{self, Addresses, RegisterError};
use calico_node::routing::Routing;
use calico_node::settings::{AddressSetting, Settings};
use common::netlink::Netlink;
use datastore::store::StoreError;
use std::time::Duration;
use tracing::{error, info, warn};

/// Between attempts to reach the datastore at startup with `WAIT_FOR_DATASTORE=true` (Calico's is 1 s too).
const DATASTORE_RETRY: Duration = Duration::from_secs(1);

fn main() {
    let level = std::env::var("CALICO_LOG_LEVEL").ok().and_then(|l| l.parse::<tracing::Level>().ok()).unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_ansi(false).try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        // `calico-node health --felix-ready --bird-ready`, or the older `calico-node -felix-ready -bird-ready`.
        let flags = if args[0] == "health" { &args[1..] } else { &args[..] };
        if args[0] == "health" || args[0].starts_with('-') && !matches!(args[0].as_str(), "-h" | "--help") {
            std::process::exit(calico_node::health::main(flags, &|k| std::env::var(k).ok()));
        }
        eprintln!("usage: calico-node\n  runs the node agent (BGP with BIRD 2, VXLAN, natOutgoing); configured by environment (NODENAME, IP, IP6, AS, DATASTORE_TYPE, ETCD_ENDPOINTS, ...)\n       calico-node health [--felix-live] [--felix-ready] [--bird-live] [--bird-ready] [--bird6-live] [--bird6-ready] [--threshold-time 30s]\n  the probes of Calico's manifests (also as -felix-ready -bird-ready)");
        std::process::exit(2);
    }
    if let Err(e) = run() {
        error!("{e}");
        std::process::exit(1);
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

fn detect(setting: &AddressSetting, v6: bool, nl: &mut Netlink) -> Result<Option<ipnet::IpNet>, String> {
    match setting {
        AddressSetting::Fixed(net) => Ok(Some(*net)),
        AddressSetting::None => Ok(None),
        AddressSetting::Autodetect(method) => {
            let candidates = autodetect::candidates(nl).map_err(|e| format!("reading the interfaces' addresses: {e}"))?;
            match autodetect::choose(method, &candidates, v6) {
                Some(a) => Ok(Some(a)),
                None => Err(format!("Couldn't autodetect an IPv{} address with {method:?}", if v6 { 6 } else { 4 })),
            }
        }
    }
}

fn run() -> Result<(), String> {
    let settings = Settings::from_env(&|k| std::env::var(k).ok(), &hostname()).map_err(|e| e.to_string())?;
    let (tx, rx) = agent::channel_pair();
    // Before any thread starts, so every thread has the signals blocked.
    agent::signals(tx.clone()).map_err(|e| format!("signal thread: {e}"))?;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let addrs = Addresses { ipv4: detect(&settings.ipv4, false, &mut nl)?, ipv6: detect(&settings.ipv6, true, &mut nl)? };
    drop(nl);
    info!(node = %settings.node_name, ipv4 = ?addrs.ipv4, ipv6 = ?addrs.ipv6, backend = ?settings.backend, "starting");
    let opened = settings.datastore.open().map_err(|e| format!("datastore: {e}"))?;
    // Bounded by the signal thread: SIGTERM ends the wait.
    let node = loop {
        match register::register_node(opened.datastore(), &settings, addrs) {
            Ok(node) => break node,
            Err(RegisterError::Store(e @ StoreError::Io { .. })) if settings.wait_for_datastore => {
                warn!(error = %e, "waiting for the datastore (WAIT_FOR_DATASTORE=true)");
                if let Ok(Event::Shutdown(sig)) = rx.recv_timeout(DATASTORE_RETRY) {
                    info!(signal = sig, "stopped while waiting for the datastore");
                    return Ok(());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    info!(node = %node.metadata.name, "node registered");
    if register::ensure_default_bgp_configuration(opened.datastore()).map_err(|e| e.to_string())? {
        info!("created bgpconfigurations/default");
    }
    for name in calico_node::pools::ensure(opened.datastore(), &settings.default_pools)? {
        info!(pool = name, "created the default IP pool");
    }
    for d in [&settings.run_dir, &settings.lib_dir, &settings.conf_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let prefixes = agent::prefixes(&settings.node_name);
    let watched = opened.watchable();
    let prefix_refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let snapshot = watched.snapshot(&prefix_refs).map_err(|e| format!("datastore: {e}"))?;
    let mut agent = Agent::new(&settings, opened.datastore(), Model::from_snapshot(snapshot), Routing::default(), tx.clone());
    let from = agent.model.revision;
    std::thread::scope(|scope| {
        let follower_tx = tx.clone();
        let prefixes = &prefixes;
        std::thread::Builder::new()
            .name("datastore".into())
            .spawn_scoped(scope, move || agent::follow(watched, prefixes, from, &follower_tx))
            .map_err(|e| format!("datastore thread: {e}"))?;
        drop(tx);
        agent.sync();
        register::write_nodename(&settings).map_err(|e| format!("{}: {e}", settings.lib_dir.join("nodename").display()))?;
        info!("ready");
        let sig = agent.run(rx);
        agent.shutdown();
        info!(signal = sig, "stopped");
        // The datastore thread blocks in its watcher: exit without waiting for it. 0 after a signal; 1 when
        // every sender went away (cannot happen while the signal thread lives).
        std::process::exit(if sig == 0 { 1 } else { 0 })
    })
}
