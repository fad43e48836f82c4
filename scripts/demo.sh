#!/usr/bin/env bash
# burrow's main job, with defaults: run a container with a published port (-p 8080:80) on the
# default network, reach it from the host, list it, stop it, and leave nothing behind. With a
# non-root user that has a subuid range (SUDO_USER, or BURROW_DEMO_USER), the same runs rootless
# on burrow's userspace stack. Needs root. Every command is printed exactly as it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH" # this checkout's burrow first
port=${BURROW_DEMO_PORT:-8080}
name="burrow-demo-$$"
site=$(mktemp -d /tmp/burrow-demo-site.XXXXXX)
chmod 755 "$site"
# The default network's bridge (burrow0, or podman's cni-podman0 where burrow uses podman's
# default network): removed again afterwards if this demo created it.
read -r net bridge < <(burrow network ls --format json | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const n=JSON.parse(s).find((x)=>x.default);console.log(n.name, n.network_interface||"-")})')
had_bridge=no
ip link show "$bridge" >/dev/null 2>&1 && had_bridge=yes
# What else the first container on a host brings: the network's IPAM store (host-local keeps its
# bookkeeping there, as podman's does) and the firewall's base tables. Both go again if new.
store=/var/lib/cni/networks/$net
had_store=no
[ -e "$store" ] && had_store=yes
tables_before=$(nft list tables 2>/dev/null || true)
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
user=${BURROW_DEMO_USER:-${SUDO_USER:-}}

cleanup() {
  burrow rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$site"
  if [ "$had_bridge" = no ] && ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  if [ "$had_store" = no ] && [ -d "$store" ] && [ -z "$(ls "$store" | grep -v -e '^lock$' -e '^last_reserved_ip')" ]; then rm -rf "$store"; fi
  nft list tables 2>/dev/null | while read -r _ family table; do
    grep -qx "table $family $table" <<<"$tables_before" || nft delete table "$family" "$table" 2>/dev/null || true
  done
  # The bridge plugin turns on IPv4 forwarding for its gateway; give the host back what it had.
  echo "$forward_before" > /proc/sys/net/ipv4/ip_forward
}
trap cleanup EXIT
# Prints a command as it is run (shell-quoted), then runs it.
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; return 1; }

echo "hello from inside a burrow container" > "$site/index.html"
show burrow run -d --rm --name "$name" -p "$port:80" -v "$site:/srv:ro" -- python3 -m http.server 80 --directory /srv
wait_http "http://127.0.0.1:$port/"
show burrow ps
show curl -sS --max-time 5 "http://127.0.0.1:$port/"
show burrow stop -t 2 "$name"
show burrow ps -a
if [ -n "$user" ] && [ "$user" != root ] && grep -q "^$user:" /etc/subuid 2>/dev/null; then
  chmod 0666 /dev/net/tun 2>/dev/null || true
  echo "--- rootless, as $user"
  rport=$((port + 1))
  show runuser -u "$user" -- burrow run -d --rm --name "$name-rootless" -p "$rport:80" -v "$site:/srv:ro" -- python3 -m http.server 80 --directory /srv
  wait_http "http://127.0.0.1:$rport/"
  show curl -sS --max-time 5 "http://127.0.0.1:$rport/"
  show runuser -u "$user" -- burrow stop -t 2 "$name-rootless"
fi
echo "cleaned up: container stopped and removed, nothing left"
