#!/usr/bin/env bash
# burrow's main job, with defaults: run a container with a published port (-p 8080:80) on the
# default bridge network, reach it from the host, list it, stop it, and leave nothing behind.
# With a non-root user that has a subuid range (SUDO_USER, or BURROW_DEMO_USER), the same runs
# rootless on burrow's userspace stack. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${BURROW_DEMO_PORT:-8080}
B="$PWD/bin/burrow"
name="burrow-demo-$$"
site=$(mktemp -d /tmp/burrow-demo-site.XXXXXX)
chmod 755 "$site"
had_bridge=no
ip link show burrow0 >/dev/null 2>&1 && had_bridge=yes
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
user=${BURROW_DEMO_USER:-${SUDO_USER:-}}

cleanup() {
  "$B" rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$site"
  if [ "$had_bridge" = no ] && ip link show burrow0 >/dev/null 2>&1; then ip link del burrow0; fi
  # The bridge plugin turns on IPv4 forwarding for its gateway; give the host back what it had.
  echo "$forward_before" > /proc/sys/net/ipv4/ip_forward
}
trap cleanup EXIT
show() { echo "\$ $*" | sed "s#$B#burrow#g; s#$site#./site#g"; "$@"; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; return 1; }

echo "hello from inside a burrow container" > "$site/index.html"
echo "\$ burrow run -d --rm --name $name -p $port:80 -v ./site:/srv:ro -- python3 -m http.server 80 --directory /srv"
id=$("$B" run -d --rm --name "$name" -p "$port:80" -v "$site:/srv:ro" -- python3 -m http.server 80 --directory /srv)
echo "${id:0:12}... (the full 64-character id)"
wait_http "http://127.0.0.1:$port/"
show "$B" ps
show curl -sS --max-time 5 "http://127.0.0.1:$port/"
show "$B" stop -t 2 "$name" >/dev/null
show "$B" ps -a
if [ -n "$user" ] && [ "$user" != root ] && grep -q "^$user:" /etc/subuid 2>/dev/null; then
  chmod 0666 /dev/net/tun 2>/dev/null || true
  echo "--- rootless, as $user"
  rport=$((port + 1))
  echo "\$ burrow run -d --rm --name $name-rootless -p $rport:80 -v ./site:/srv:ro -- python3 -m http.server 80 --directory /srv"
  rid=$(runuser -u "$user" -- "$B" run -d --rm --name "$name-rootless" -p "$rport:80" -v "$site:/srv:ro" -- python3 -m http.server 80 --directory /srv)
  echo "${rid:0:12}..."
  wait_http "http://127.0.0.1:$rport/"
  show curl -sS --max-time 5 "http://127.0.0.1:$rport/"
  runuser -u "$user" -- "$B" stop -t 2 "$name-rootless" >/dev/null
fi
echo "cleaned up: container stopped and removed, nothing left"
