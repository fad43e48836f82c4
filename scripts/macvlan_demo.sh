#!/usr/bin/env bash
# A macvlan walkthrough that touches nothing of the machine's own network: a throwaway "host"
# namespace whose parent interface lan0 is a veth into a "LAN" namespace with one LAN host.
set -euo pipefail
cd "$(dirname "$0")/.."
h=mvdemo-host; l=mvdemo-lan; c=mvdemo-ctr
cfg=$(mktemp -d)
cleanup() { ip netns del "$c" 2>/dev/null || true; ip netns del "$h" 2>/dev/null || true; ip netns del "$l" 2>/dev/null || true; rm -rf "$cfg" /var/lib/cni/networks/lan; }
trap cleanup EXIT
printf '[network]\ncni_config_dir = "%s/net.d"\ncni_cache_dir = "%s/cache"\n' "$cfg" "$cfg" > "$cfg/burrow.toml"
ip netns add "$h"; ip netns add "$l"; ip netns add "$c"
ip -n "$h" link add lan0 type veth peer name eth0 netns "$l"
ip -n "$h" addr add 192.168.77.2/24 dev lan0; ip -n "$h" link set lan0 up; ip -n "$h" link set lo up
ip -n "$l" addr add 192.168.77.1/24 dev eth0; ip -n "$l" link set eth0 up
B="nsenter --net=/run/netns/$h bin/burrow --config $cfg/burrow.toml"
show() { echo "\$ $*"; "$@"; }
echo "\$ burrow network create -d macvlan -o parent=lan0 -o host_shim=true --subnet 192.168.77.0/24 --ip-range 192.168.77.64/26 lan"
$B network create -d macvlan -o parent=lan0 -o host_shim=true --subnet 192.168.77.0/24 --ip-range 192.168.77.64/26 lan
echo "\$ burrow network inspect lan"
$B network inspect lan | python3 -c 'import json,sys; n=json.load(sys.stdin)[0]; print(json.dumps({k: n[k] for k in ("name","driver","network_interface","subnets","options")}, indent=2))'
echo "\$ burrow cni add lan $c --id web"
$B cni add lan "$c" --id web > "$cfg/result.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"cniVersion": r["cniVersion"], "interfaces": r["interfaces"], "ips": r["ips"]}))' "$cfg/result.json"
ctr_ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ips"][0]["address"].split("/")[0])' "$cfg/result.json")
echo "\$ ip -d link show eth0   # in the container"
ip -n "$c" -d link show eth0 | grep -o 'macvlan mode [a-z]*'
echo "\$ ping -c1 192.168.77.1        # container -> a host on the LAN"
ip netns exec "$c" ping -c1 -W2 192.168.77.1 | sed -n 2p
echo "\$ ping -c1 $ctr_ip       # the host -> its container, through the host shim"
ip netns exec "$h" ping -c1 -W2 "$ctr_ip" | sed -n 2p
echo "\$ burrow cni del lan $c --id web && burrow network rm lan"
$B cni del lan "$c" --id web; $B network rm lan
echo "\$ ip -br link   # in the host: no container interface, no shim left"
ip -n "$h" -br link
