//! Borrowed addresses (strictAffinity off): a pool of one /26 block, claimed by node 1's first pod; pods on
//! nodes 2 and 3 then borrow addresses from that block. Each borrowed /32 must be routed to its borrower from
//! every node, the block's owner included despite its blackhole for the block (a more specific `/32 via
//! <borrower> proto bird` there), and every pod must reach every other (Calico's #3246: pods on the owner
//! could not reach a borrower's pod, the owner sending its address into the blackhole). Needs root, bird2, etcd.
mod support;

use support::*;
use testbed::cluster::{Cluster, Pod, Spec};

#[test]
fn borrowed_addresses_are_routed_to_their_borrowers_from_every_node() {
    if !available("borrowed_addresses_are_routed_to_their_borrowers_from_every_node") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    cluster.calicoctl_ok(&["ipam", "configure", "--strictaffinity=false"], "");
    cluster.apply(&[pool("tiny", "10.244.7.0/26", 26)]);
    let (mut agents, _) = start_agents(&cluster, &[]);
    for a in &mut agents {
        a.wait_sessions(2, TIMEOUT);
    }
    let conf = cluster.calico_conf();
    let owner = cluster.nodes[0].add_pod(&conf, "owner");
    let block = block_of(&owner.ip);
    assert_eq!(block, "10.244.7.0/26");
    wait_block_everywhere(&cluster, 0, &block);

    let borrowers: Vec<Pod> = (1..3).map(|i| cluster.nodes[i].add_pod(&conf, "borrower")).collect();
    let shown = cluster.calicoctl_ok(&["ipam", "show", "--show-borrowed"], "");
    for (k, p) in borrowers.iter().enumerate() {
        assert_eq!(block_of(&p.ip), block, "pod on node {} did not borrow from node 1's block", k + 2);
        assert!(shown.contains(&p.ip), "calicoctl ipam show --show-borrowed lacks {}: {shown}", p.ip);
    }
    for (k, p) in borrowers.iter().enumerate() {
        let borrower = k + 1;
        let host = format!("{}/32", p.ip);
        for (i, n) in cluster.nodes.iter().enumerate() {
            if i == borrower {
                // Its own pod's route, made by cni-calico, which BIRD learns and announces.
                let r = n.route(&p.ip);
                assert!(r.contains(" dev cali") && !r.contains("proto bird"), "pod route on node {}: {r}", i + 1);
            } else {
                n.wait_route(&host, &format!("via {} dev eth0 proto bird", cluster.nodes[borrower].ip), TIMEOUT);
            }
        }
    }
    // The owner still blackholes the rest of its block; the others route the block to it.
    wait_block_everywhere(&cluster, 0, &block);
    let mut all: Vec<(usize, &Pod)> = vec![(0, &owner)];
    all.extend(borrowers.iter().enumerate().map(|(k, p)| (k + 1, p)));
    ping_all(&all);

    // A borrower's pod going takes its /32 off every node; the block stays with its owner.
    cluster.nodes[2].del_pod(&conf, &borrowers[1]).ok();
    for n in cluster.nodes.iter().take(2) {
        n.wait_no_route(&format!("{}/32", borrowers[1].ip), TIMEOUT);
    }
    wait_block_everywhere(&cluster, 0, &block);
    ping_all(&all[..2]);
}
