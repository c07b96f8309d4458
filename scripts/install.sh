#!/usr/bin/env bash
# Installs calico-rs's CNI plugins (cni-calico, cni-ipam) into a CNI bin dir, calicoctl next to them and on
# PATH, and, only when asked, a network config into a CNI conf dir. Never overwrites a different existing
# config unless --force (which keeps a backup).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/install.sh [options]

Builds release binaries (scripts/release.sh: static on glibc hosts) and installs cni-calico, cni-ipam
and calicoctl (into the plugin dir, where cni-ipam's old operator command lines find it, and linked
from a directory on PATH).

  --bin-dir DIR     CNI plugin dir to install into (default /opt/cni/bin; Debian's runtimes
                    look in /usr/lib/cni)
  --path-dir DIR    where calicoctl is linked for the shell (default /usr/local/bin)
  --write-conf      also write a network config list into the conf dir
  --conf FILE       the conflist to write (default testdata/calico-local.conflist; see testdata/
                    for dual-stack, portmap-chained and etcd examples)
  --conf-dir DIR    CNI config dir (default /etc/cni/net.d)
  --force           replace an existing, different config file (the old one is kept as .bak-<time>)
  --no-build        install already built binaries instead of running cargo
  --from DIR        where the built binaries are (default: where scripts/release.sh puts them,
                    target/<host triple>/release)
  --dry-run         print what would be done, change nothing
  -h, --help        this text
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=/opt/cni/bin
path_dir=/usr/local/bin
conf_dir=/etc/cni/net.d
conf_src=$root/testdata/calico-local.conflist
write_conf=0 force=0 build=1 dry=0 from=

while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --path-dir) path_dir=${2:?--path-dir needs a directory}; shift 2 ;;
    --conf-dir) conf_dir=${2:?--conf-dir needs a directory}; shift 2 ;;
    --conf) conf_src=${2:?--conf needs a file}; shift 2 ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --write-conf) write_conf=1; shift ;;
    --force) force=1; shift ;;
    --no-build) build=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
run() { if [ "$dry" = 1 ]; then echo "would run: $*"; else "$@"; fi; }

source "$root/scripts/release.sh"
plugins=(cni-calico cni-ipam calicoctl)

# Check the config first: a refusal must come before anything is changed.
if [ "$write_conf" = 1 ]; then
  [ -f "$conf_src" ] || die "config $conf_src not found"
  if command -v jq >/dev/null; then
    jq -e '.cniVersion and .name and (.plugins | length > 0)' "$conf_src" >/dev/null \
      || die "$conf_src is not a network config list (needs cniVersion, name, plugins)"
  fi
  dest=$conf_dir/10-$(basename "$conf_src")
  case "$dest" in *.conflist) ;; *) die "$conf_src: the file name must end in .conflist (podman reads only those)" ;; esac
  if [ -e "$dest" ] && ! cmp -s "$conf_src" "$dest" && [ "$force" = 0 ]; then
    die "$dest exists and differs from $conf_src; not overwriting it (use --force to replace it, keeping a backup)"
  fi
fi

if [ "$build" = 1 ]; then
  command -v cargo >/dev/null || die "cargo not found (install Rust, or use --no-build --from DIR)"
  if [ "$dry" = 1 ]; then echo "would run: release_build -p cni-calico -p cni-ipam -p calicoctl"; else release_build -p cni-ipam -p calicoctl; fi
fi
if [ -z "$from" ]; then
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p') || true
  from=${REL:-${CARGO_TARGET_DIR:-$root/target}/$host/release}
fi
for p in "${plugins[@]}"; do
  [ "$dry" = 1 ] || [ -x "$from/$p" ] || die "$from/$p not found or not executable (build first, or --from DIR)"
done

# Plugins: copy next to the target, then rename over it, so a runtime exec'ing the plugin meanwhile sees
# either the old or the new binary, never half a file (and no "text file busy").
run mkdir -p "$bin_dir"
for p in "${plugins[@]}"; do
  run install -m 0755 "$from/$p" "$bin_dir/.$p.new"
  run mv -f "$bin_dir/.$p.new" "$bin_dir/$p"
  [ "$dry" = 1 ] || say "installed $bin_dir/$p"
done
[ "$dry" = 1 ] || say "$("$bin_dir/cni-calico" --version)"
# calicoctl on PATH: a link to the one beside the plugins, so both are always the same build.
run mkdir -p "$path_dir"
run ln -sfn "$bin_dir/calicoctl" "$path_dir/calicoctl"
[ "$dry" = 1 ] || say "linked $path_dir/calicoctl -> $bin_dir/calicoctl ($("$path_dir/calicoctl" version --client | head -n1 | tr -s ' '))"

if [ "$write_conf" = 0 ]; then
  say "no config written (pass --write-conf to install $(basename "$conf_src") into $conf_dir)"
  exit 0
fi

run mkdir -p "$conf_dir"
if [ -e "$dest" ]; then
  if cmp -s "$conf_src" "$dest"; then
    say "$dest is already up to date"
  else
    backup=$dest.bak-$(date +%Y%m%d%H%M%S)
    run cp -p "$dest" "$backup"
    run install -m 0644 "$conf_src" "$dest"
    say "replaced $dest (previous version kept as $backup)"
  fi
else
  run install -m 0644 "$conf_src" "$dest"
  [ "$dry" = 1 ] || say "wrote $dest"
fi

# containerd's ctr and CRI plugin use only the first config file by name: say if ours is not it.
first=$(find "$conf_dir" -maxdepth 1 -type f \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) 2>/dev/null | LC_ALL=C sort | head -n1)
if [ -n "$first" ] && [ "$first" != "$dest" ] && [ "$dry" = 0 ]; then
  say "note: $first sorts before $dest; runtimes that use only the first file (containerd) will use that one"
fi

# cni-ipam allocates only from pools that exist: show the calicoctl command that creates the ones the config
# names (the local store is calicoctl's default datastore; DATASTORE_TYPE=local CALICO_LOCAL_STORE_DIR name it).
if command -v jq >/dev/null; then
  store=$(jq -r '[.plugins[] | select(.ipam.type == "cni-ipam" and ((.ipam.datastore_type // .datastore_type // "local") == "local")) | .ipam.local_store_dir // "/var/lib/calico-rs/ipam"][0] // empty' "$conf_src")
  if [ -n "$store" ]; then
    i=0
    for cidr in $(jq -r '.plugins[] | select(.ipam.type == "cni-ipam") | (.ipam.ipv4_pools // []) + (.ipam.ipv6_pools // []) | .[]' "$conf_src"); do
      case "$cidr" in */*)
        say "create the pool if it does not exist yet: printf 'apiVersion: projectcalico.org/v3\\nkind: IPPool\\nmetadata:\\n  name: pool-$i\\nspec:\\n  cidr: $cidr\\n' | DATASTORE_TYPE=local CALICO_LOCAL_STORE_DIR=$store calicoctl apply -f -"
        i=$((i + 1)) ;;
      esac
    done
  fi
fi
