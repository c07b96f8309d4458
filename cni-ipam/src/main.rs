//! `cni-ipam`: a CNI IPAM plugin when `CNI_COMMAND` is set, operator commands otherwise.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = if std::env::var_os("CNI_COMMAND").is_none() && !args.is_empty() {
        cni_ipam::cli::run(&args)
    } else {
        common::cni::skel::run(&cni_ipam::plugin::IpamPlugin)
    };
    std::process::exit(code);
}
