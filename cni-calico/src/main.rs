//! cni-calico: exec'd by container runtimes with CNI_COMMAND and the network config on stdin.
use common::cni::skel;

const USAGE: &str = "cni-calico: Calico-style CNI network plugin (calico-rs)

Container runtimes run this binary with CNI_COMMAND=ADD|DEL|CHECK|STATUS|GC|VERSION, the network
config on stdin and the CNI_* variables in the environment; it prints the result (or a CNI error)
as JSON on stdout. Install it in a CNI bin dir (e.g. /opt/cni/bin) next to cni-ipam.

  cni-calico --version   print the version and the CNI versions supported
  cni-calico --help      this text
";

fn main() {
    // The IPAM and namespace threads share the main malloc arena instead of each mapping one of their own:
    // a few short-lived threads gain nothing from separate arenas, and each costs pages of peak RSS.
    // SAFETY: mallopt only sets a malloc parameter; called before any thread exists.
    unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) };
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-v") => {
            println!("cni-calico {} (CNI {})", env!("CARGO_PKG_VERSION"), common::cni::version::SUPPORTED.join(", "));
            return;
        }
        Some("--help" | "-h") => {
            print!("{USAGE}");
            return;
        }
        _ => {}
    }
    if std::env::var_os("CNI_COMMAND").is_none() {
        eprint!("{USAGE}");
        return;
    }
    std::process::exit(skel::run(&cni_calico::Calico));
}
