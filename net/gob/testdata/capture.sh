#!/usr/bin/env bash
# Regenerates the fixtures: one DHCP.Allocate and one DHCP.Release between Debian's reference
# dhcp plugin and daemon (containernetworking-plugins 1.1.1, /usr/lib/cni), through a proxy that
# keeps each direction's bytes, with dnsmasq as the LAN's server in a throwaway namespace.
# Run as root: bash net/gob/testdata/capture.sh (needs dnsmasq-base; touches no host interface
# but the veth it makes).
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'kill $(cat $T/*.pid 2>/dev/null) 2>/dev/null || true; ip netns del caplan 2>/dev/null || true; ip netns del capctr 2>/dev/null || true; ip link del capp 2>/dev/null || true; rm -rf $T' EXIT
cat > $T/proxy.cjs <<'JS'
const net = require('net'); const fs = require('fs');
const [listen, target, out] = process.argv.slice(2);
let n = 0;
net.createServer((c) => {
  const id = ++n; const up = net.connect(target); const c2s = [], s2c = [];
  c.on('data', (d) => { c2s.push(d); up.write(d); });
  up.on('data', (d) => { s2c.push(d); c.write(d); });
  c.on('end', () => up.end()); up.on('end', () => c.end());
  c.on('close', () => { fs.writeFileSync(`${out}/conn${id}.c2s`, Buffer.concat(c2s)); fs.writeFileSync(`${out}/conn${id}.s2c`, Buffer.concat(s2c)); });
  c.on('error', () => {}); up.on('error', () => {});
}).listen(listen);
JS
ip netns add caplan; ip netns add capctr; ip link add capp type veth peer name lan0
ip link set lan0 netns caplan; ip link set capp up
ip -n caplan addr add 192.168.77.1/24 dev lan0; ip -n caplan link set lan0 up
ip netns exec caplan dnsmasq --no-daemon --port=0 --interface=lan0 --bind-interfaces --pid-file= \
  --dhcp-range=192.168.77.50,192.168.77.99,255.255.255.0,2m --dhcp-option=option:router,192.168.77.1 \
  --dhcp-leasefile=$T/leases > $T/dnsmasq.log 2>&1 & echo $! > $T/dnsmasq.pid
/usr/lib/cni/dhcp daemon -socketpath $T/dhcp.sock > $T/daemon.log 2>&1 & echo $! > $T/daemon.pid
sleep 0.5
node $T/proxy.cjs $T/proxy.sock $T/dhcp.sock $T & echo $! > $T/proxy.pid
sleep 0.5
echo "{\"cniVersion\":\"0.4.0\",\"name\":\"webnet\",\"type\":\"macvlan\",\"master\":\"capp\",\"ipam\":{\"type\":\"dhcp\",\"daemonSocketPath\":\"$T/proxy.sock\"}}" > $T/net.json
export CNI_CONTAINERID=abc123 CNI_NETNS=/run/netns/capctr CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web"
CNI_COMMAND=ADD /usr/lib/cni/macvlan < $T/net.json > "$OUT/allocate.result.json"
CNI_COMMAND=DEL /usr/lib/cni/macvlan < $T/net.json
sleep 0.3
cp $T/conn1.c2s "$OUT/allocate.c2s"; cp $T/conn1.s2c "$OUT/allocate.s2c"
cp $T/conn2.c2s "$OUT/release.c2s"; cp $T/conn2.s2c "$OUT/release.s2c"
echo "fixtures written to $OUT (the daemon socket path inside them is $T/proxy.sock)"
