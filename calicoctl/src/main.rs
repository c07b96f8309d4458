//! `calicoctl`: parses the command line, runs the command, exits with its code.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(calicoctl::commands::run(&args));
}
