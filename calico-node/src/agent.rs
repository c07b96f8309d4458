//! The agent's loop. One thread follows the datastore (a snapshot, then its change stream), one waits for
//! signals, one per BIRD waits for it to exit; they send `Event`s to the main thread, which keeps the
//! model (every record under the watched prefixes) and syncs at most once per debounce interval: a change
//! after a quiet interval at once (a block claimed by a pod start reaches BIRD without waiting), the changes
//! of a burst together at the end of the interval. A sync turns the model into BIRD's config (`bird::plan` + `bird::render`). A config byte-identical to the one in
//! place is not touched; a new one is checked with `bird -p`, renamed over the old one and loaded with
//! `configure` (BIRD restarts only the protocols whose config changed). A plan that fails (a bad resource
//! written around calicoctl) keeps the last good config and is reported in the log and the state file.
use crate::bird::{self, BgpSnapshot, BlockAffinity};
use crate::birdc::Control;
use crate::routing::Routing;
use crate::settings::Settings;
use crate::state::AgentState;
use crate::supervisor::{self, Bird, BirdExited};
use crate::tunnel;
use dataplane::BlockInfo;
use datastore::ipam::block::Block;
use datastore::ipam::records::{self, Affinity};
use datastore::resources::kinds::{BGP_CONFIGURATION, BGP_PEER, IPPOOL, NODE};
use datastore::resources::metadata::rfc3339_now;
use datastore::store::{affinity_prefix, Change, Datastore, Key, Kind, Record, Snapshot, Watchable, Watched};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// The longest a watcher call blocks before it is called again (it resumes where it was).
const WATCH_SLICE: Duration = Duration::from_secs(60);
/// Waits between attempts at a store that does not answer.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often the secret files BGP passwords come from are read again while nothing else happens: a rotated
/// password (a mounted secret volume updated in place) reaches BIRD within this, with no datastore change.
const SECRETS_RECHECK: Duration = Duration::from_secs(5);

pub enum Event {
    Changes(Vec<Change>),
    /// The change stream lost its place: the model is replaced by this snapshot.
    Resync(Snapshot),
    /// The store does not answer (the watcher retries by itself).
    StoreDown(String),
    /// It answers again, with nothing changed meanwhile (a change or a resync says so too).
    StoreUp,
    BirdExited(BirdExited),
    Shutdown(i32),
}

/// The prefixes the agent follows: the resources BGP and routing need, this node's affinities, every block
/// (routing of encapsulated pools needs each block's owner).
pub fn prefixes(node: &str) -> Vec<String> {
    vec![
        NODE.prefix.to_string(),
        BGP_CONFIGURATION.prefix.to_string(),
        BGP_PEER.prefix.to_string(),
        IPPOOL.prefix.to_string(),
        affinity_prefix(node),
        Kind::Block.prefix().to_string(),
    ]
}

/// Every record the agent follows, by key path.
#[derive(Default)]
pub struct Model {
    /// Every record but the blocks.
    pub records: BTreeMap<String, (Key, Record)>,
    /// The blocks, decoded once per change (every allocation in the cluster changes one; the routing pass
    /// reads them all): who owns each, which addresses are borrowed by whom.
    pub blocks: BTreeMap<IpNet, BlockInfo>,
    pub revision: u64,
}

impl Model {
    pub fn from_snapshot(s: Snapshot) -> Model {
        let mut model = Model { revision: s.revision, ..Model::default() };
        for (key, record) in s.records {
            model.put(key, record);
        }
        model
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.revision = self.revision.max(c.revision());
            match c {
                Change::Put { key, record, .. } => self.put(key, record),
                Change::Delete { key: Key::Block(cidr), .. } => {
                    self.blocks.remove(&cidr);
                }
                Change::Delete { key, .. } => {
                    self.records.remove(&key.path());
                }
            }
        }
    }

    fn put(&mut self, key: Key, record: Record) {
        if let Key::Block(cidr) = key {
            match records::decode::<Block>(&key, &record.value) {
                Ok(b) => {
                    self.blocks.insert(cidr, BlockInfo::from_block(&b));
                }
                Err(e) => {
                    warn!(error = %e, "block left out of routing");
                    self.blocks.remove(&cidr);
                }
            }
        } else {
            self.records.insert(key.path(), (key, record));
        }
    }

    /// The BGP planner's input: every BGP resource (a document that fails calicoctl's checks is an error
    /// naming it) and this node's affinities.
    pub fn bgp_snapshot(&self, s: &Settings) -> Result<BgpSnapshot, bird::PlanError> {
        let mut snap = BgpSnapshot::new(s.node_name.clone());
        snap.settings.router_id = s.router_id;
        for (key, record) in self.records.values() {
            match key {
                Key::Resource { .. } => snap.add_document(&record.value.to_value())?,
                Key::Affinity { host, cidr } if *host == s.node_name => match record.value.decode::<Affinity>() {
                    Ok(affinity) => snap.affinities.push(BlockAffinity { cidr: *cidr, affinity }),
                    Err(e) => warn!(key = %key, error = %e, "affinity record does not decode: left out"),
                },
                _ => {}
            }
        }
        let (passwords, problems) = bird::secrets::load(&s.secrets_dir, &snap.secret_refs());
        for p in problems {
            warn!("{p}");
        }
        snap.passwords = passwords;
        Ok(snap)
    }
}

/// Follows the store from `model.revision` on, sending what it sees; ends when the main thread is gone.
pub fn follow(store: &dyn Watchable, prefixes: &[String], mut from: u64, events: &Sender<Event>) {
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let mut down = false;
    // Bounded by the receiver: every iteration sends or blocks in the store, and a failed send ends it.
    loop {
        let mut watcher = match store.watch(&prefixes, from + 1) {
            Ok(w) => w,
            Err(e) => {
                down = true;
                if events.send(Event::StoreDown(e.to_string())).is_err() {
                    return;
                }
                std::thread::sleep(STORE_RETRY);
                continue;
            }
        };
        loop {
            // While the store is down, short slices: a reconnect with nothing new is noticed within one.
            let slice = if down { STORE_RETRY } else { WATCH_SLICE };
            let sent = match watcher.next(Instant::now() + slice) {
                Ok(Watched::Changes(c)) => {
                    down = false;
                    from = from.max(c.iter().map(Change::revision).max().unwrap_or(from));
                    events.send(Event::Changes(c))
                }
                Ok(Watched::Quiet) if down && watcher.connected() => {
                    down = false;
                    events.send(Event::StoreUp)
                }
                Ok(Watched::Quiet) => Ok(()),
                Ok(Watched::Resync) => break,
                Err(e) => {
                    down = true;
                    events.send(Event::StoreDown(e.to_string()))
                }
            };
            if sent.is_err() {
                return;
            }
        }
        // The history is gone: a new snapshot, then a new watcher from it.
        match store.snapshot(&prefixes) {
            Ok(s) => {
                from = s.revision;
                down = false;
                if events.send(Event::Resync(s)).is_err() {
                    return;
                }
            }
            Err(e) => {
                down = true;
                if events.send(Event::StoreDown(e.to_string())).is_err() {
                    return;
                }
                std::thread::sleep(STORE_RETRY);
            }
        }
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (so in every thread spawned after) and waits for
/// them on a thread of their own.
pub fn signals(events: Sender<Event>) -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local set, then pthread_sigmask on the calling thread.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is a valid signal set and `sig` a valid out-pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        let _ = events.send(Event::Shutdown(sig));
    })?;
    Ok(())
}

pub struct Agent<'a> {
    pub settings: &'a Settings,
    /// For the agent's own writes (the VXLAN tunnel address and the Node's VTEP fields).
    store: &'a dyn Datastore,
    pub model: Model,
    pub bird: Option<Bird>,
    pub routing: Routing,
    pub state: AgentState,
    events: Sender<Event>,
    /// The config BIRD runs (the file's content), once one applied.
    applied: Option<String>,
    /// The store stopped answering (logged once until it answers again).
    store_down: bool,
    /// The secrets the last rendered config refers to, and what they held then.
    secrets: (Vec<bird::SecretRef>, BTreeMap<bird::SecretRef, String>),
    /// Whether BIRD's config must be rendered again: a record other than a block changed (blocks are not in
    /// it: a block is announced through its affinity), a resync, a secret, or the last render or apply failed
    /// (with no BIRD running, every sync renders and starts one).
    bgp_stale: bool,
}

impl<'a> Agent<'a> {
    pub fn new(settings: &'a Settings, store: &'a dyn Datastore, model: Model, routing: Routing, events: Sender<Event>) -> Agent<'a> {
        let state = AgentState {
            pid: std::process::id(),
            node_name: settings.node_name.clone(),
            backend: format!("{:?}", settings.backend).to_lowercase(),
            ..AgentState::default()
        };
        let applied = std::fs::read_to_string(settings.bird_conf()).ok();
        Agent { settings, store, model, bird: None, routing, state, events, applied, store_down: false, secrets: Default::default(), bgp_stale: true }
    }

    fn uses_bird(&self) -> bool {
        self.settings.backend == dataplane::Backend::Bird
    }

    /// Brings the node to the model: BIRD's config (starting or adopting BIRD the first time), the
    /// agent-programmed routes, the state file.
    pub fn sync(&mut self) {
        self.state.revision = self.model.revision;
        if self.uses_bird() && (self.bgp_stale || self.bird.is_none()) {
            match self.render() {
                Ok(text) => {
                    self.state.config_error = None;
                    match self.apply_bird(text) {
                        Ok(()) => self.bgp_stale = false,
                        Err(e) => {
                            error!(error = %e, "BIRD config not applied");
                            self.state.config_error = Some(e);
                        }
                    }
                }
                Err(e) => {
                    error!(error = %e, "the datastore's resources make no BIRD config: the last good one keeps running");
                    self.state.config_error = Some(e);
                }
            }
        }
        if self.settings.backend != dataplane::Backend::None {
            self.settle_vtep();
        }
        let outcome = self.routing.sync(self.settings, &self.model);
        self.state.ipip = outcome.ipip;
        self.write_state();
    }

    fn write_state(&self) {
        if let Err(e) = self.state.write(&self.settings.run_dir) {
            warn!(error = %e, "state file not written");
        }
    }

    /// The periodic route refresh: the agent's kernel state compared with the model even though nothing changed.
    fn refresh(&mut self) {
        let outcome = self.routing.refresh(self.settings, &self.model);
        if outcome.ipip != self.state.ipip {
            self.state.ipip = outcome.ipip;
            self.write_state();
        }
    }

    /// The datastore answered: the outage, if there was one, is over (in the log and the state file).
    fn store_up(&mut self) {
        if self.store_down {
            info!("datastore answers again");
            self.store_down = false;
            self.state.datastore_down = None;
            self.write_state();
        }
    }

    /// Allocates or releases the VXLAN tunnel address when the pools and the Node's recorded VTEP disagree
    /// (the Node's new fields come back through the watch and reach the routing at the next sync).
    fn settle_vtep(&mut self) {
        let me = self.settings.node_name.as_str();
        let (nodes, pools, _) = crate::routing::inputs(&self.model);
        let Some(node) = self.model.records.get(&Key::resource(&NODE, me).path()) else { return };
        let doc = node.1.value.to_value();
        let labels: BTreeMap<String, String> = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap_or_default();
        let mine = nodes.iter().find(|n| n.name == me);
        let recorded = [false, true].map(|v6| mine.and_then(|n| n.vtep(v6)).map(|v| tunnel::Vtep { ip: v.ip, mac: v.mac }));
        if tunnel::is_settled(&pools, &labels, recorded, me) {
            return;
        }
        match tunnel::reconcile_vxlan(self.store, me) {
            Ok(vteps) => info!(?vteps, "VXLAN tunnel endpoints recorded"),
            Err(e) => warn!(error = %e, "VXLAN tunnel endpoint not settled; trying again at the next change"),
        }
    }

    fn render(&mut self) -> Result<String, String> {
        let snap = self.model.bgp_snapshot(self.settings).map_err(|e| e.to_string())?;
        self.secrets = (snap.secret_refs(), snap.passwords.clone());
        let config = bird::plan(&snap).map_err(|e| e.to_string())?;
        if config.warnings != self.state.warnings {
            for w in &config.warnings {
                warn!("{w}");
            }
            self.state.warnings = config.warnings.clone();
        }
        Ok(bird::render(&config))
    }

    /// Puts `text` in place and has BIRD load it; starts (or adopts) BIRD when there is none yet.
    fn apply_bird(&mut self, text: String) -> Result<(), String> {
        let s = self.settings;
        let path = s.bird_conf();
        if self.applied.as_deref() != Some(text.as_str()) {
            std::fs::create_dir_all(&s.conf_dir).map_err(|e| format!("{}: {e}", s.conf_dir.display()))?;
            let staged = path.with_extension("conf.new");
            std::fs::write(&staged, &text).map_err(|e| format!("{}: {e}", staged.display()))?;
            supervisor::check_config(&s.bird, &staged).map_err(|e| format!("bird -p refused the rendered config: {e}"))?;
            std::fs::rename(&staged, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            if self.bird.is_some() {
                let reply = Control::connect(&s.bird_ctl()).and_then(|mut c| c.configure(&path)).map_err(|e| e.to_string())?;
                info!(reply = %reply.text(), "BIRD reconfigured");
            }
            self.applied = Some(text);
        } else {
            debug!("BIRD config unchanged");
        }
        if self.bird.is_none() {
            self.start_bird(false)?;
        }
        Ok(())
    }

    /// Adopts a running BIRD (and reloads it if its config changed meanwhile) or starts one.
    fn start_bird(&mut self, recover: bool) -> Result<(), String> {
        let s = self.settings;
        if let Some(b) = Bird::adopt(s) {
            info!(pid = b.pid, "adopted the running BIRD");
            // Its config may be older than the file: `configure` with an unchanged file restarts nothing.
            Control::connect(&s.bird_ctl()).and_then(|mut c| c.configure(&s.bird_conf())).map_err(|e| e.to_string())?;
            b.watch(None, self.events.clone()).map_err(|e| e.to_string())?;
            self.bird = Some(b);
            return Ok(());
        }
        let (b, child) = Bird::start(s, recover).map_err(|e| e.to_string())?;
        info!(pid = b.pid, recover, "BIRD started");
        b.watch(Some(child), self.events.clone()).map_err(|e| e.to_string())?;
        self.bird = Some(b);
        Ok(())
    }

    /// True when a secret file the config refers to holds something else than when last read (each change
    /// counts once, also when the config it leads to cannot be rendered).
    fn secrets_changed(&mut self) -> bool {
        let (refs, held) = &mut self.secrets;
        if refs.is_empty() {
            return false;
        }
        let now = bird::secrets::load(&self.settings.secrets_dir, refs).0;
        if now == *held {
            return false;
        }
        *held = now;
        true
    }

    /// Runs until a signal; returns the signal.
    pub fn run(&mut self, events: Receiver<Event>) -> i32 {
        let mut due: Option<Instant> = Some(Instant::now());
        let mut last_sync: Option<Instant> = None;
        let mut next_refresh = self.settings.route_refresh.map(|r| Instant::now() + r);
        // Bounded by the signal thread: every iteration handles one event or one due sync.
        loop {
            let event = match due {
                Some(d) => match events.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return 0,
                },
                // Idle: woken by an event, the route refresh, or (only when the config has passwords) the
                // secret files' re-read; with neither, it sleeps until an event.
                None => {
                    // Due whether or not events keep coming (checked before each idle wait, not on timeouts).
                    if next_refresh.is_some_and(|r| r <= Instant::now()) {
                        self.refresh();
                        next_refresh = self.settings.route_refresh.map(|r| Instant::now() + r);
                    }
                    let now = Instant::now();
                    let secrets = (!self.secrets.0.is_empty()).then(|| now + SECRETS_RECHECK);
                    let wake = [secrets, next_refresh].into_iter().flatten().min();
                    let got = match wake {
                        Some(w) => events.recv_timeout(w.saturating_duration_since(now)),
                        None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match got {
                        Ok(e) => Some(e),
                        Err(RecvTimeoutError::Timeout) => {
                            if secrets.is_some() && self.secrets_changed() {
                                info!("a BGP password's secret file changed");
                                self.bgp_stale = true;
                                due = Some(Instant::now());
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return 0,
                    }
                }
            };
            match event {
                None => {
                    due = None;
                    self.sync();
                    last_sync = Some(Instant::now());
                }
                Some(Event::Changes(c)) => {
                    self.store_up();
                    self.bgp_stale |= c.iter().any(|ch| !matches!(ch.key(), Key::Block(_)));
                    self.model.apply(c);
                    let now = Instant::now();
                    due.get_or_insert_with(|| last_sync.map_or(now, |l| (l + self.settings.debounce).max(now)));
                }
                Some(Event::Resync(snap)) => {
                    self.store_up();
                    info!(revision = snap.revision, "resynchronised with the datastore");
                    self.model = Model::from_snapshot(snap);
                    self.bgp_stale = true;
                    due = Some(Instant::now());
                }
                Some(Event::StoreDown(e)) => {
                    if !self.store_down {
                        warn!(error = %e, "datastore unreachable: routes and sessions stay as they are");
                        self.store_down = true;
                        self.state.datastore_down = Some(format!("since {}: {e}", rfc3339_now()));
                        self.write_state();
                    }
                }
                Some(Event::StoreUp) => self.store_up(),
                Some(Event::BirdExited(x)) => {
                    if self.bird.as_ref().map(|b| b.pid) == Some(x.pid) {
                        warn!(pid = x.pid, "BIRD exited: restarting it in graceful-restart recovery");
                        self.bird = None;
                        if let Err(e) = self.start_bird(true) {
                            error!(error = %e, "BIRD did not restart; trying again at the next change");
                        }
                    }
                }
                Some(Event::Shutdown(sig)) => return sig,
            }
        }
    }

    /// Orderly shutdown: BIRD stopped (routes stay: `persist`), the routing's own state removed.
    pub fn shutdown(&mut self) {
        if let Some(b) = self.bird.take() {
            info!(pid = b.pid, "stopping BIRD");
            b.stop();
        }
        self.routing.shutdown();
        let _ = std::fs::remove_file(crate::state::path(&self.settings.run_dir));
    }
}

pub fn channel_pair() -> (Sender<Event>, Receiver<Event>) {
    channel()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::ipam::block::{Now, Owner};
    use datastore::store::Json;

    fn block_record(cidr: &str, owner: &str, borrower: Option<&str>) -> (Key, Record) {
        let cidr: IpNet = cidr.parse().unwrap();
        let mut b = Block::new(cidr, owner, &Now::system());
        if let Some(host) = borrower {
            b.assign_next(&Owner { handle: "h".into(), attrs: [("node".to_string(), host.to_string())].into() });
        }
        (Key::Block(cidr), Record { value: Json::encode(&b).unwrap(), rev: 1 })
    }

    #[test]
    fn blocks_are_decoded_as_they_change_and_a_bad_one_is_left_out() {
        let (k1, r1) = block_record("10.0.0.0/26", "a", None);
        let (k2, r2) = block_record("10.0.0.64/26", "b", None);
        let mut m = Model::from_snapshot(Snapshot { revision: 1, records: vec![(k1.clone(), r1), (k2.clone(), r2)] });
        assert_eq!(m.blocks.len(), 2);
        assert!(m.records.is_empty(), "blocks are kept decoded only");
        let (_, lent) = block_record("10.0.0.0/26", "a", Some("c"));
        m.apply(vec![Change::Put { key: k1.clone(), record: lent, revision: 2 }]);
        let cidr: IpNet = "10.0.0.0/26".parse().unwrap();
        assert_eq!(m.blocks[&cidr].borrowed, vec![("10.0.0.0".parse().unwrap(), "c".to_string())]);
        let bad = Record { value: Json::encode(&serde_json::json!({"cidr": 7})).unwrap(), rev: 3 };
        m.apply(vec![Change::Put { key: k1, record: bad, revision: 3 }, Change::Delete { key: k2, revision: 4 }]);
        assert!(m.blocks.is_empty(), "a block that does not decode is not routed on stale data");
        assert_eq!(m.revision, 4);
    }
}
