/**
 * The INPUT rules that let a network's containers reach the DNS server on their gateway when
 * the host's INPUT policy drops (ufw, firewalld and hand-written firewalls do): per family with
 * a gateway, UDP and TCP to port 53 arriving on the network's bridge are accepted, inserted first
 * in the filter table's INPUT chain. containers/dnsname inserts the UDP rule alone and never
 * removes it; netavark accepts DNS in its NETAVARK_INPUT chain. burrow's carry the comment
 * `burrow dnsname: <network>`, so they are found again: the last record of the network going
 * (DEL, GC) removes them.
 *
 * Only in the initial user namespace: a rootless network lives in the user's own network
 * namespace, whose INPUT nobody has restricted.
 */
import fs from 'node:fs';
import type { Family } from '../../net/ip/addr.js';
import { applyTable, readTable } from '../../net/firewall/iptables.js';
import { withFirewallLock } from '../../net/firewall/lock.js';

const comment = (network: string) => `burrow dnsname: ${network}`;

/** The rules for `network` on `bridge`, as iptables-save prints them (minus "-A INPUT "). */
export function inputRules(network: string, bridge: string): string[] {
  return ['udp', 'tcp'].map((proto) => `-i ${bridge} -p ${proto} -m ${proto} --dport 53 -m comment --comment "${comment(network)}" -j ACCEPT`);
}

/** True in the initial user namespace (uid_map maps every id to itself). */
export function inInitialUserns(uidMap = (() => {
  try {
    return fs.readFileSync('/proc/self/uid_map', 'utf8');
  } catch {
    return '';
  }
})()): boolean {
  return /^\s*0\s+0\s+4294967295\s*$/.test(uidMap.trim());
}

/** Inserts the rules that are missing, for each family; one iptables-restore batch per family. */
export async function allowDns(network: string, bridge: string, families: Family[]): Promise<void> {
  await withFirewallLock(async () => {
    for (const family of families) {
      const have = new Set((await readTable(family, 'filter')).rules);
      const missing = inputRules(network, bridge).filter((r) => !have.has(`-A INPUT ${r}`));
      await applyTable(family, 'filter', missing.map((r) => `-I INPUT 1 ${r}`), `accept DNS from bridge ${bridge} (network ${network}) in INPUT`);
    }
  });
}

/** Removes every rule of `network` (any bridge, both families); nothing when there are none. */
export async function revokeDns(network: string): Promise<void> {
  const mark = `--comment "${comment(network)}"`;
  await withFirewallLock(async () => {
    for (const family of [4, 6] as Family[]) {
      let rules: string[];
      try {
        rules = (await readTable(family, 'filter')).rules;
      } catch {
        continue; // no ip6tables: nothing of ours there either
      }
      const ours = rules.filter((r) => r.startsWith('-A INPUT ') && r.includes(mark));
      await applyTable(family, 'filter', ours.map((r) => `-D ${r.slice(3)}`), `remove the DNS rules of network ${network} from INPUT`);
    }
  });
}
