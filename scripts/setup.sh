#!/usr/bin/env bash
# Installs everything burrow needs on Debian 12 (as root): kernel tools, the reference CNI
# plugins and the rootless tools it is compared with, then npm dependencies, the native addon
# and the bundles (npm ci). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "scripts/setup.sh: run as root (it installs Debian packages)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ca-certificates g++ make python3 curl iproute2 iptables nftables conntrack iputils-ping util-linux procps \
  podman runc busybox-static \
  containernetworking-plugins iperf3 uidmap passt slirp4netns zstd tmux dnsmasq-base dnsperf >/dev/null
# netavark 1.4 and aardvark-dns 1.4 are anchors (bench) and the other side of the drop-in tests
# (bin/compat). Installing Debian's packages would switch an unconfigured podman 4.3 to the
# netavark backend, so the binaries are unpacked into /opt instead, where the tests and
# bench/dns.ts look for them.
anchors=/opt/burrow-anchors
for pkg in netavark aardvark-dns; do
  if [ ! -x "$anchors/$pkg/usr/lib/podman/$pkg" ]; then
    tmp=$(mktemp -d)
    chmod 777 "$tmp"; mkdir -p "$anchors/$pkg"
    (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null && dpkg -x "${pkg}"_*.deb "$anchors/$pkg")
    rm -rf "$tmp"
  fi
done
command -v node >/dev/null || { echo "Node.js 20 is required (node not found)" >&2; exit 1; }
export npm_config_nodedir=/usr   # node-gyp builds against /usr/include/node; no header download
npm ci --no-audit --no-fund --loglevel=error
# `burrow` on PATH: a link to this checkout's launcher. Another program of that name is left alone.
link=/usr/local/bin/burrow
if [ ! -e "$link" ] || { [ -L "$link" ] && [[ "$(readlink "$link")" == */bin/burrow ]]; }; then
  ln -sfn "$PWD/bin/burrow" "$link"
else
  echo "scripts/setup.sh: $link exists and is not a burrow link; run $PWD/bin/burrow instead" >&2
fi
