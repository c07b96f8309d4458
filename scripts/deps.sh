#!/usr/bin/env bash
# Installs the Debian packages the tests, demo and benchmarks need. Idempotent: does nothing when all are present.
# Daemons (etcd, bird, frr) are only ever run by the tests, inside network namespaces they create: their packages'
# init scripts must not start them in the machine's namespace, so the install runs under a policy-rc.d that
# forbids every start, and fails if one of them runs in this network namespace afterwards anyway.
set -euo pipefail
pkgs=(iproute2 iputils-ping containernetworking-plugins procps util-linux jq time)
# --bench: what scripts/bench.sh needs on top (the etcd-store contender runs its own etcd-server); --bgp: what
# scripts/bench-bgp.sh needs (BIRD 2 and etcd-server, run in the beds it builds).
case "${1:-}" in
  --all) pkgs+=(containerd runc podman busybox-static golang-go golang-github-appc-cni-dev etcd-server etcd-client curl iptables openssl
    bird2 frr nftables tcpdump) ;;
  --bench) pkgs+=(etcd-server) ;;
  --bgp) pkgs+=(etcd-server bird2) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means "forbidden".
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The packages' daemons, and their units: none may run in this network namespace after the install (it would
# listen on the machine's interfaces: bgpd on :179, etcd on :2379), and on a systemd machine their units, which
# the packages enabled for the next boot, are disabled again: the tests start their own.
declare -A unit=([bird2]=bird [frr]=frr [etcd-server]=etcd)
declare -A daemons=([bird2]="bird" [frr]="watchfrr zebra bgpd staticd" [etcd-server]="etcd")
self=$(readlink /proc/self/ns/net)
for p in "${missing[@]}"; do
  [ -n "${unit[$p]:-}" ] || continue
  if [ -d /run/systemd/system ] && systemctl is-enabled --quiet "${unit[$p]}" 2>/dev/null; then
    systemctl disable --quiet "${unit[$p]}" >&2
  fi
  for name in ${daemons[$p]}; do
    for pid in $(pgrep -x "$name" || true); do
      if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$self" ]; then
        echo "deps.sh: $name (pid $pid, package $p) runs in the machine's network namespace after the install; stop it" >&2
        exit 1
      fi
    done
  done
done
