/**
 * The DNS server of container names, seen from the runtime: after a kill -9 of the server, the
 * next burrow command that collects containers (`gcContainers`) starts it again from the record
 * files, which the dnsname plugin keeps on disk (plugins/dnsname/control.ts). Rootful: the host's
 * server; rootless: the server inside the user's network namespace, through its CNI server.
 */
import path from 'node:path';
import type { BurrowConfig } from '../config.js';
import { dnsPaths, findDnsServer, readAllRecords, syncServer, withDnsLock } from '../../plugins/dnsname/control.js';
import { callInside } from './cni_server.js';
import { findUserNetns, netnsDirOf } from './user_netns.js';

/** Starts the server again when records exist and none runs; a line saying so, or null. */
export async function reviveDnsServer(config: BurrowConfig): Promise<string | null> {
  if (process.getuid?.() === 0) {
    // the environment the runtime gives its plugins (runtime/context.ts)
    const p = dnsPaths({ ...process.env, XDG_RUNTIME_DIR: '' });
    if (findDnsServer(p)) return null;
    const n = readAllRecords(p).networks.reduce((k, x) => k + x.entries.length, 0);
    if (!n) return null;
    await withDnsLock(p, () => syncServer(p));
    return `started the DNS server again (${n} records)`;
  }
  const p = dnsPaths({ BURROW_DNS_ROOT: path.join(netnsDirOf(config.stateDir), 'run', 'containers', 'cni') });
  const holder = findUserNetns(config.stateDir);
  if (!holder || findDnsServer(p)) return null;
  const n = readAllRecords(p).networks.reduce((k, x) => k + x.entries.length, 0);
  if (!n) return null;
  await callInside(config.stateDir, config, async () => holder.pid, { op: 'dns' });
  return `started the DNS server of the user's networks again (${n} records)`;
}
