//! `cni-ipam`: a CNI IPAM plugin when `CNI_COMMAND` is set; run by hand, the old operator command lines,
//! which now run calicoctl (see `cli`).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cni = std::env::var_os("CNI_COMMAND").is_some();
    let code = match args.first().map(String::as_str) {
        Some("--version" | "-v") if !cni => {
            println!("cni-ipam {} (CNI {})", env!("CARGO_PKG_VERSION"), common::cni::version::SUPPORTED.join(", "));
            0
        }
        Some("--help" | "-h" | "help") if !cni => {
            print!("{}", cni_ipam::cli::USAGE);
            0
        }
        // Run by hand with nothing to do: say how to use it instead of answering as a plugin.
        None if !cni => {
            eprint!("{}", cni_ipam::cli::USAGE);
            0
        }
        Some(_) if !cni => cni_ipam::cli::run(&args),
        _ => common::cni::skel::run(&cni_ipam::plugin::IpamPlugin),
    };
    std::process::exit(code);
}
