//! Golden files of the BIRD 2 renderer: each `tests/golden/<case>/input.json` (the node's name, the agent's
//! settings, v3 resources as calicoctl would store them, the node's block affinities; a `secrets/` directory
//! beside it is the agent's secret directory) must plan and render to exactly `bird.conf`, with exactly the
//! warnings of `warnings.txt` (none when absent), and `bird -p -c` must accept the file. Regenerate with
//! `CALICO_NODE_UPDATE_GOLDEN=1 cargo test -p calico-node --test golden` and review the diff. No root needed.
use calico_node::bird::{self, secrets, BgpSnapshot, BirdLog, BlockAffinity};
use datastore::ipam::records::Affinity;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIRD: &str = "/usr/sbin/bird";
const UPDATE: &str = "CALICO_NODE_UPDATE_GOLDEN";

fn snapshot(case: &Path) -> BgpSnapshot {
    let text = std::fs::read_to_string(case.join("input.json")).expect("input.json");
    let input: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    let mut s = BgpSnapshot::new(input["node"].as_str().expect("node"));
    for doc in input["resources"].as_array().into_iter().flatten() {
        s.add_document(doc).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    }
    for a in input["affinities"].as_array().into_iter().flatten() {
        let cidr = a["cidr"].as_str().and_then(|c| c.parse().ok()).expect("affinity cidr");
        let affinity: Affinity = serde_json::from_value(a.clone()).expect("affinity");
        s.affinities.push(BlockAffinity { cidr, affinity });
    }
    if let Some(id) = input["settings"]["routerId"].as_str() {
        s.settings.router_id = id.parse().expect("routerId");
    }
    if let Some(f) = input["settings"]["logFile"].as_str() {
        s.settings.log = BirdLog::File(f.into());
    }
    let dir = case.join("secrets");
    if dir.is_dir() {
        let (found, problems) = secrets::load(&dir, &s.secret_refs());
        assert!(problems.is_empty(), "{}: {problems:?}", case.display());
        s.passwords = found;
    }
    s
}

/// `bird -p -c`; `None` when bird2 is not installed here (a failure in CI).
fn bird_parse(file: &Path) -> Option<Result<(), String>> {
    if !Path::new(BIRD).exists() {
        assert!(std::env::var_os("CI").is_none(), "the golden files need bird2 to check them (scripts/deps.sh --all)");
        return None;
    }
    let out = Command::new(BIRD).arg("-p").arg("-c").arg(file).output().expect("run bird -p");
    Some(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) })
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(&root).expect("tests/golden").flatten().map(|e| e.path()).filter(|p| p.join("input.json").exists()).collect();
    cases.sort();
    cases
}

#[test]
fn every_case_renders_its_golden_file_and_bird_accepts_it() {
    let update = std::env::var_os(UPDATE).is_some();
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut unchecked = false;
    let cases = cases();
    assert!(cases.len() >= 20, "golden cases: {cases:?}");
    for case in &cases {
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let s = snapshot(case);
        let config = match bird::plan(&s) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: plan: {e}"));
                continue;
            }
        };
        let text = bird::render(&config);
        // The text depends on the resources, not on the order the datastore listed them in.
        let mut shuffled = s.clone();
        shuffled.nodes.reverse();
        shuffled.bgp_configurations.reverse();
        shuffled.bgp_peers.reverse();
        shuffled.ip_pools.reverse();
        shuffled.affinities.reverse();
        let again = bird::plan(&shuffled).map(|c| bird::render(&c));
        assert_eq!(again.as_deref(), Ok(text.as_str()), "{name}: the order of the snapshot's lists changes nothing");
        let warnings: String = config.warnings.iter().map(|w| format!("{w}\n")).collect();
        let (conf, warn) = (case.join("bird.conf"), case.join("warnings.txt"));
        if update {
            std::fs::write(&conf, &text).expect("write bird.conf");
            if warnings.is_empty() {
                let _ = std::fs::remove_file(&warn);
            } else {
                std::fs::write(&warn, &warnings).expect("write warnings.txt");
            }
        } else {
            if std::fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
                let got = scratch.path().join(format!("{name}.conf"));
                std::fs::write(&got, &text).expect("write");
                failures.push(format!("{name}: differs from bird.conf (got {}; {UPDATE}=1 regenerates)", got.display()));
            }
            if std::fs::read_to_string(&warn).unwrap_or_default() != warnings {
                failures.push(format!("{name}: warnings differ from warnings.txt: {warnings:?}"));
            }
        }
        let file = scratch.path().join(format!("{name}.bird.conf"));
        std::fs::write(&file, &text).expect("write");
        match bird_parse(&file) {
            Some(Err(e)) => failures.push(format!("{name}: bird -p: {e}")),
            Some(Ok(())) => {}
            None => unchecked = true,
        }
    }
    if unchecked {
        eprintln!("SKIP bird -p: {BIRD} not installed (scripts/deps.sh --all)");
    }
    if !failures.is_empty() {
        // Keep the rendered files for a look.
        let kept = scratch.keep();
        panic!("{} of {} cases failed (rendered files in {}):\n{}", failures.len(), cases.len(), kept.display(), failures.join("\n"));
    }
}
