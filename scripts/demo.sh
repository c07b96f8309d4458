#!/usr/bin/env bash
# The cluster tour: builds everything (release), makes three "node" network namespaces on a shared fabric
# bridge, one etcd (in a network namespace of its own, reached through unix sockets), calico-node + BIRD 2
# on every node, two pods per node through cni-calico, then shows the cross-node ping matrix, node-1's
# routes and `calicoctl node status`, switches the cluster live from the full mesh to a route reflector
# while a pod pings another every 10 ms (and counts what it lost), and removes everything. Needs root.
# Never touches the machine's own network namespace: every address lives in namespaces made here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --all >/dev/null
echo "== building (release)"
source scripts/release.sh
source scripts/ping-matrix.sh
release_build --quiet -p cni-ipam -p calicoctl -p calico-node

N=3
T=$(mktemp -d /tmp/calico-rs-cluster.XXXXXX)
FABRIC=crs-demo-fabric
ETCD_NS=crs-demo-etcd
PIDS=()
cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for d in "$T"/node-*; do
      echo "== $(basename "$d"): BIRD's protocols and the agent's last log lines" >&2
      birdc -s "$d/run/bird.ctl" show protocols >&2
      tail -n 15 "$d/agent.log" >&2
    done
    [ -f "$T/ping.log" ] && { echo "== the continuous ping's last lines" >&2; tail -n 5 "$T/ping.log" >&2; }
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # A BIRD whose agent did not stop it (the agent stops its BIRD on SIGTERM).
  for f in "$T"/node-*/run/bird.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for i in $(seq 1 $N); do
    for p in a b; do ip netns del "crs-demo-n$i-$p" 2>/dev/null; done
    ip netns del "crs-demo-n$i" 2>/dev/null
  done
  ip netns del "$FABRIC" 2>/dev/null; ip netns del "$ETCD_NS" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/bin"
ln -s "$REL/cni-calico" "$T/bin/cni-calico"; ln -s "$REL/cni-ipam" "$T/bin/cni-ipam"

# Poll with a deadline: wait_for SECONDS WHAT COMMAND...
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.1
  done
}

echo "== etcd (unix sockets under $T)"
ip netns add "$ETCD_NS"
# etcd wants host:port in a unix URL, so it runs in $T and names its sockets relative to it.
(cd "$T" && exec ip netns exec "$ETCD_NS" etcd --name m0 --data-dir etcd \
  --listen-client-urls unix://etcd.sock:1 --advertise-client-urls unix://etcd.sock:1 \
  --listen-peer-urls unix://peer.sock:1 --initial-advertise-peer-urls unix://peer.sock:1 \
  --initial-cluster m0=unix://peer.sock:1 --logger zap --log-outputs etcd.log >/dev/null 2>&1) &
PIDS+=($!)
export ETCD_ENDPOINTS="unix://$T/etcd.sock:1"
CTL="$REL/calicoctl"
wait_for 20 etcd "$CTL" get ippools

echo "== fabric and nodes: node-i is 10.250.0.i/24 on bridge br0"
ip netns add "$FABRIC"
ip -n "$FABRIC" link add br0 type bridge; ip -n "$FABRIC" link set br0 up
ip -n "$FABRIC" addr add 10.250.0.254/24 dev br0
for i in $(seq 1 $N); do
  ns=crs-demo-n$i
  ip netns add "$ns"
  ip -n "$ns" link add eth0 type veth peer name n$i netns "$FABRIC"
  ip -n "$FABRIC" link set n$i master br0 up
  ip -n "$ns" addr add 10.250.0.$i/24 dev eth0; ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
  # A default route, as a real host has: the pods' gateway 169.254.1.1 is proxy-ARPed only when routable.
  ip -n "$ns" route add default via 10.250.0.254
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
done

printf 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: demo-pool\nspec:\n  cidr: 10.244.0.0/16\n  blockSize: 26\n  natOutgoing: false\n' \
  | "$CTL" apply -f - >/dev/null

echo "== calico-node on every node"
for i in $(seq 1 $N); do
  d=$T/node-$i; mkdir -p "$d"
  ip netns exec crs-demo-n$i env NODENAME=node-$i IP=10.250.0.$i/24 ETCD_ENDPOINTS="$ETCD_ENDPOINTS" \
    CALICO_RUN_DIR="$d/run" CALICO_LIB_DIR="$d/lib" CALICO_CONF_DIR="$d/conf" "$REL/calico-node" >"$d/agent.log" 2>&1 &
  PIDS+=($!)
done
established() { # NODE COUNT: COUNT BGP sessions Established on NODE
  [ "$(birdc -s "$T/node-$1/run/bird.ctl" show protocols 2>/dev/null | grep -c ' BGP .* Established')" -eq "$2" ]
}
start=$SECONDS
for i in $(seq 1 $N); do
  wait_for 30 "node-$i ready" test -f "$T/node-$i/lib/nodename"
  wait_for 30 "node-$i's mesh sessions" established $i $((N - 1))
done
echo "  every node ready, full mesh Established in $((SECONDS - start)) s"

cni() { # VERB NODE POD
  local cid; cid=$(echo "$3" | sha256sum | cut -c1-64)
  ip netns exec crs-demo-n$2 env CNI_COMMAND="$1" CNI_CONTAINERID="$cid" CNI_NETNS="/run/netns/$3" \
    CNI_IFNAME=eth0 CNI_PATH="$T/bin" "$T/bin/cni-calico" < "$T/net-$2.json"
}
echo; echo "== pods (two per node)"
declare -A ADDR NODE_OF
PODS=()
for i in $(seq 1 $N); do
  cat > "$T/net-$i.json" <<JSON
{"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "cni-calico", "mtu": 1500, "nodename": "node-$i",
 "datastore_type": "etcdv3", "etcd_endpoints": "$ETCD_ENDPOINTS", "ipam": {"type": "cni-ipam"}}
JSON
  for p in a b; do
    pod=crs-demo-n$i-$p; ip netns add "$pod"
    cni ADD $i "$pod" > "$T/$pod.json"
    ADDR[$pod]=$(jq -r '.ips[0].address' "$T/$pod.json" | cut -d/ -f1); NODE_OF[$pod]=$i
    PODS+=("$pod")
    printf '  %-16s on node-%s  %s\n' "$pod" "$i" "${ADDR[$pod]}"
  done
done
bird_routes() { [ "$(ip -n crs-demo-n$1 route | grep -c 'proto bird')" -ge $(( N )) ]; }
for i in $(seq 1 $N); do wait_for 30 "node-$i's routes to the other nodes' blocks" bird_routes $i; done

echo; echo "== ping matrix across nodes (from row to column)"
ping_matrix crs-demo- "${PODS[@]}"

echo; echo "== ip route on node-1"
ip -n crs-demo-n1 route | sed 's/^/  /'
echo; echo "== calicoctl node status on node-1"
CALICO_RUN_DIR="$T/node-1/run" "$CTL" node status | sed 's/^/  /'

echo "== live switch: full mesh -> route reflector node-1, while n2-a pings n3-a every 10 ms"
ip netns exec crs-demo-n2-a ping -i 0.01 -W 1 "${ADDR[crs-demo-n3-a]}" > "$T/ping.log" 2>&1 &
PING=$!; PIDS+=($PING)
"$CTL" label nodes node-1 route-reflector=true >/dev/null
"$CTL" patch node node-1 -p '{"spec":{"bgp":{"routeReflectorClusterID":"244.0.0.1"}}}' >/dev/null
cat <<'YAML' | "$CTL" apply -f - >/dev/null
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
YAML
rr_up() { birdc -s "$T/node-$1/run/bird.ctl" show protocols 2>/dev/null | grep -q '^Node_10_250_0_1 .*Established'; }
for i in $(seq 2 $N); do wait_for 30 "node-$i's session to the reflector" rr_up $i; done
echo "  reflector sessions Established; turning the mesh off"
printf 'apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n' \
  | "$CTL" apply -f - >/dev/null
no_mesh() { ! birdc -s "$T/node-$1/run/bird.ctl" show protocols 2>/dev/null | grep -q '^Mesh_'; }
for i in $(seq 1 $N); do wait_for 30 "node-$i's mesh sessions gone" no_mesh $i; done
for i in $(seq 1 $N); do wait_for 30 "node-$i's routes" bird_routes $i; done
# Let the ping run on the new topology for a moment, then stop it and read its summary.
replies() { grep -c 'bytes from' "$T/ping.log"; }
more_replies() { [ "$(replies)" -gt "$1" ]; }
wait_for 10 "pings on the new topology" more_replies $(($(replies) + 100))
kill -INT $PING; wait $PING 2>/dev/null || true
summary=$(grep 'packets transmitted' "$T/ping.log")
echo "  ping n2-a -> n3-a during the switch: $summary"
echo; echo "== calicoctl node status on node-2 (its only session: the reflector)"
CALICO_RUN_DIR="$T/node-2/run" "$CTL" node status | sed 's/^/  /'
echo "== ip route on node-2 (next hops are still the nodes that own the blocks)"
ip -n crs-demo-n2 route | grep 'proto bird' | sed 's/^/  /'
echo; echo "== ping matrix after the switch"
ping_matrix crs-demo- "${PODS[@]}"
sent=$(echo "$summary" | awk '{print $1}'); got=$(echo "$summary" | awk '{print $4}')

echo; echo "== teardown"
for pod in "${PODS[@]}"; do
  jq --slurpfile r "$T/$pod.json" '. + {prevResult: $r[0]}' "$T/net-${NODE_OF[$pod]}.json" > "$T/del.json"
  cp "$T/del.json" "$T/net-del.json"
  (cid=$(echo "$pod" | sha256sum | cut -c1-64); ip netns exec crs-demo-n${NODE_OF[$pod]} env CNI_COMMAND=DEL CNI_CONTAINERID="$cid" \
    CNI_NETNS="/run/netns/$pod" CNI_IFNAME=eth0 CNI_PATH="$T/bin" "$T/bin/cni-calico" < "$T/del.json")
done
if [ "$sent" != "$got" ]; then echo "demo FAILED: $((sent - got)) of $sent pings lost during the switch"; exit 1; fi
echo "demo OK: 3 nodes, 6 pods, every cross-node ping answered, mesh -> route reflector with 0 of $sent pings lost"
