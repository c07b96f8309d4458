#!/usr/bin/env bash
# The single-node tour (scripts/demo.sh is the cluster one): builds cni-calico, cni-ipam and calicoctl, makes a "node" network namespace with three pod
# namespaces, wires the pods through the plugins exactly as a container runtime would, shows addresses,
# routes, a ping matrix and IPAM block usage, then deletes everything. Needs root. Never touches the
# machine's own network namespace: everything lives in namespaces this script creates and removes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== building (release)"
source scripts/release.sh
source scripts/ping-matrix.sh
release_build --quiet -p cni-ipam -p calicoctl

T=$(mktemp -d /tmp/calico-rs-demo.XXXXXX)
NODE=crs-demo-node
UPLINK=crs-demo-uplink
PODS=(crs-demo-pod-a crs-demo-pod-b crs-demo-pod-c)
cleanup() {
  for ns in "${PODS[@]}" "$NODE" "$UPLINK"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
cleanup; mkdir -p "$T/bin"

# The node: a namespace with an uplink and a default route, as a real host has (proxy ARP for the pods'
# gateway 169.254.1.1 only answers when the node has a route for it).
ip netns add "$NODE"; ip netns add "$UPLINK"
ip -n "$NODE" link add up0 type veth peer name up1 netns "$UPLINK"
ip -n "$NODE" addr add 192.0.2.1/24 dev up0; ip -n "$NODE" link set up0 up; ip -n "$NODE" link set lo up
ip -n "$UPLINK" addr add 192.0.2.2/24 dev up1; ip -n "$UPLINK" link set up1 up
ip -n "$NODE" route add default via 192.0.2.2
for p in "${PODS[@]}"; do ip netns add "$p"; done

ln -s "$REL/cni-calico" "$T/bin/cni-calico"; ln -s "$REL/cni-ipam" "$T/bin/cni-ipam"
printf 'apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: local\n  localStoreDir: %s\n' "$T/ipam" >"$T/calicoctl.cfg"
CTL=("$REL/calicoctl" -c "$T/calicoctl.cfg")
printf 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: demo-pool\nspec:\n  cidr: 10.244.0.0/16\n  blockSize: 26\n' \
  | "${CTL[@]}" apply -f - >/dev/null
cat > "$T/net.json" <<JSON
{"cniVersion": "1.0.0", "name": "demo-net", "type": "cni-calico", "mtu": 1500,
 "ipam": {"type": "cni-ipam", "nodename": "demo-node", "local_store_dir": "$T/ipam", "ipv4_pools": ["demo-pool"]}}
JSON
echo "== network config"; cat "$T/net.json"

cni() { # VERB POD [stdin-file]; container IDs are 64 hex characters, as runtimes make them
  ip netns exec "$NODE" env CNI_COMMAND="$1" CNI_CONTAINERID="$(echo "$2" | sha256sum | cut -c1-64)" CNI_NETNS="/run/netns/$2" \
    CNI_IFNAME=eth0 CNI_PATH="$T/bin" "$T/bin/cni-calico" < "${3:-$T/net.json}"
}

echo; echo "== ADD"
declare -A ADDR
for p in "${PODS[@]}"; do
  start=$EPOCHREALTIME
  cni ADD "$p" > "$T/$p.json"
  ms=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", (b-a)*1000}')
  ADDR[$p]=$(jq -r '.ips[0].address' "$T/$p.json" | cut -d/ -f1)
  printf '  %-16s %-14s host veth %s  (%s ms)\n' "$p" "${ADDR[$p]}" "$(jq -r '.interfaces[0].name' "$T/$p.json")" "$ms"
done

echo; echo "== node routes (one /32 per pod, on its cali veth)"
ip -n "$NODE" route | sed 's/^/  /'
echo; echo "== routes inside ${PODS[0]}"
ip -n "${PODS[0]}" route | sed 's/^/  /'

echo; echo "== ping matrix (from row to column)"
fail=0
ping_matrix "" "${PODS[@]}" || fail=1

echo; echo "== IPAM block usage (calicoctl ipam show --show-blocks)"
"${CTL[@]}" ipam show --show-blocks | sed 's/^/  /'

echo; echo "== DEL"
for p in "${PODS[@]}"; do
  jq --slurpfile r "$T/$p.json" '. + {prevResult: $r[0]}' "$T/net.json" > "$T/$p.del.json"
  cni DEL "$p" "$T/$p.del.json"
  echo "  $p released"
done
echo; echo "== after DEL: node links, node routes, IPAM usage"
ip -n "$NODE" -o link | awk -F': ' '{print "  link " $2}'
ip -n "$NODE" route | sed 's/^/  route /'
"${CTL[@]}" ipam show | sed 's/^/  /'
left=$(ip -n "$NODE" -o link | grep -c cali || true)
if [ "$fail" -ne 0 ] || [ "$left" -ne 0 ]; then echo "demo FAILED"; exit 1; fi
echo; echo "demo OK: 3 pods wired, all pings answered, everything removed"
