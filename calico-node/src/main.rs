//! `calico-node`: the per-node agent (startup, watch loop and BIRD supervision come with issue 13's other
//! items; this binary prints its usage until then).
fn main() {
    eprintln!("usage: calico-node\n  runs the Calico node agent (BGP with BIRD 2); configured by environment (NODENAME, IP, AS, ...)");
    std::process::exit(2);
}
