#!/usr/bin/env bash
# burrow's main job, with defaults: give a container network namespace an address on the default
# bridge network with a published port (-p 8080:80), serve HTTP from inside it, reach it from the
# host, verify the attachment, and take everything down again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${BURROW_DEMO_PORT:-8080}
B="bin/burrow"
ns="burrow-demo-$$"
server=""
attached=no
had_bridge=no
ip link show burrow0 >/dev/null 2>&1 && had_bridge=yes
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)

cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  if [ "$attached" = yes ]; then
    echo "\$ burrow cni del burrow $ns --id demo"
    "$B" cni del burrow "$ns" --id demo
  fi
  ip netns del "$ns" 2>/dev/null || true
  if [ "$had_bridge" = no ] && ip link show burrow0 >/dev/null 2>&1; then ip link del burrow0; fi
  # The bridge plugin turns on IPv4 forwarding for its gateway; give the host back what it had.
  echo "$forward_before" > /proc/sys/net/ipv4/ip_forward
  echo "cleaned up: netns $ns removed, attachment deleted"
}
trap cleanup EXIT
show() { echo "\$ $*"; "$@"; }

ip netns add "$ns"
ip -n "$ns" link set lo up
show "$B" network ls
echo "\$ burrow cni add burrow $ns --id demo --cap-args '{\"portMappings\":[{\"hostPort\":$port,\"containerPort\":80,\"protocol\":\"tcp\"}]}'"
"$B" cni add burrow "$ns" --id demo --cap-args "{\"portMappings\":[{\"hostPort\":$port,\"containerPort\":80,\"protocol\":\"tcp\"}]}" | tee /tmp/burrow-demo-result.json
attached=yes
show ip -n "$ns" -br addr show eth0
mkdir -p "/tmp/$ns" && echo "hello from inside $ns" > "/tmp/$ns/index.html"
ip netns exec "$ns" python3 -m http.server 80 --bind 0.0.0.0 --directory "/tmp/$ns" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null && break; sleep 0.1; done
show curl -sS --max-time 5 "http://127.0.0.1:$port/"
ctr_ip=$(python3 -c 'import json;print(json.load(open("/tmp/burrow-demo-result.json"))["ips"][0]["address"].split("/")[0])')
show curl -sS --max-time 5 "http://$ctr_ip/"
show "$B" cni check burrow "$ns" --id demo
echo "check: ok"
rm -rf "/tmp/$ns" /tmp/burrow-demo-result.json
