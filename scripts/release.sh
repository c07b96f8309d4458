# Sourced by demo.sh, bench.sh and install.sh: `release_build [cargo args]` builds the release binaries as
# they ship and sets REL to their directory. cni-calico is built last and on its own, so that it leaves out
# the `tls` feature (cni-ipam keeps it): a workspace-wide build would unify features and put it back.
#
# On glibc hosts they are linked statically (libc.a, not position-independent). A CNI plugin is one short
# process per call: a static binary skips the dynamic loader, libc.so's relocations and its mapped pages,
# which saves about 0.45 ms of CPU per exec and a fifth of the peak RSS of an ADD. The flags go to
# the target only (hence --target): build scripts and proc-macros stay dynamic, as they must.
release_build() {
  local host flags=
  host=$(rustc -vV | sed -n 's/^host: //p')
  case "$host" in
    *-linux-gnu*) flags="-C target-feature=+crt-static -C relocation-model=static" ;;
  esac
  local build=(env "CARGO_TARGET_$(echo "$host" | tr 'a-z.-' 'A-Z__')_RUSTFLAGS=$flags"
    cargo build --release --target "$host" --manifest-path "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
  "${build[@]}" "$@"
  "${build[@]}" --quiet -p cni-calico
  REL=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  REL=${CARGO_TARGET_DIR:-$REL/target}/$host/release
}
