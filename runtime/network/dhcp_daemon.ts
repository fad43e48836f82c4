/**
 * `burrow run` on a DHCP network: the dhcp plugin needs its daemon, which renews every lease for
 * as long as the container runs. The runtime starts it when none answers on the network's socket
 * (`ipam.daemonSocketPath`, or /run/cni/dhcp.sock): burrow's own `dhcp daemon`, detached, its log
 * in /run/cni/dhcp.log, its leases in /run/cni/dhcp-leases.json. It then stays, as a daemon
 * started by hand or by systemd (burrow-dhcp.socket) would; the next run finds it. Other runtimes
 * (podman, libcni) get the reference's behaviour: the plugin says to start the daemon.
 */
import fs from 'node:fs';
import path from 'node:path';
import { constants, flock } from '../../native/mod.js';
import type { NetworkConfigList } from '../../net/cni/types.js';
import { answers } from '../../native/system.js';
import { installRoot } from '../config.js';
import { spawnReady } from './user_netns.js';

const DEFAULT_SOCKET = '/run/cni/dhcp.sock';


/** The daemon sockets a network's plugins need (none unless its IPAM is dhcp). */
export function dhcpSockets(list: NetworkConfigList): string[] {
  return list.plugins.flatMap((p) => {
    const ipam = p.ipam as { type?: string; daemonSocketPath?: string } | undefined;
    return ipam?.type === 'dhcp' ? [ipam.daemonSocketPath || DEFAULT_SOCKET] : [];
  });
}

/** Starts burrow's DHCP daemon on each socket of `list` where none answers (as root only). */
export async function ensureDhcpDaemon(list: NetworkConfigList): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (const socket of dhcpSockets(list)) {
    if (await answers(socket)) continue;
    const dir = path.dirname(socket);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const lock = fs.openSync(`${socket}.lock`, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      await flock(lock, constants().LOCK_EX);
      if (await answers(socket)) continue; // another run started it meanwhile
      const bundle = path.join(installRoot(), 'dist', 'plugins', 'dhcp.cjs');
      const leases = socket === DEFAULT_SOCKET ? '/run/cni/dhcp-leases.json' : `${socket}.leases.json`;
      await spawnReady(process.execPath, ['--', bundle, 'daemon', '-socketpath', socket, '-leasefile', leases, '-readyfd', '3'], path.join(dir, 'dhcp.log'), `the DHCP daemon for ${socket}`);
    } finally {
      fs.closeSync(lock);
    }
  }
}
