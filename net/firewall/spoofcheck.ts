/**
 * MAC spoof check for bridge ports (the reference's macspoofchk), in nftables:
 * table bridge nat, base chain PREROUTING (filter, prerouting, priority -300),
 * a rule "iifname <hostveth> jump cni-br-iface-<id>-<ifname>", and that chain
 * jumping to "...-mac", which returns for the container's MAC and drops the
 * rest. Every rule is commented "macspoofchk-<id>-<ifname>". Names match the
 * reference so either side's DEL removes the other's rules.
 */
import { withFirewallLock } from './lock.js';
import { mustRun, nftJson } from './run.js';

const T = 'bridge nat';

export function spoofRefId(containerId: string, ifname: string): string {
  return `${containerId}-${ifname}`;
}

/** The setup transaction. Pure; exported for golden tests. */
export function spoofcheckScript(hostIface: string, mac: string, refId: string): string {
  const iface = `cni-br-iface-${refId}`;
  const macChain = `${iface}-mac`;
  const c = `comment "macspoofchk-${refId}"`;
  return [
    `add table ${T}`,
    `add chain ${T} PREROUTING { type filter hook prerouting priority -300 ; policy accept ; }`,
    `add chain ${T} ${iface}`,
    `add chain ${T} ${macChain}`,
    `flush chain ${T} ${iface}`,
    `flush chain ${T} ${macChain}`,
    `add rule ${T} PREROUTING iifname "${hostIface}" jump ${iface} ${c}`,
    `add rule ${T} ${iface} jump ${macChain} ${c}`,
    `add rule ${T} ${macChain} ether saddr ${mac} return ${c}`,
    `add rule ${T} ${macChain} drop ${c}`,
    '',
  ].join('\n');
}

interface NftObj {
  chain?: { name: string };
  rule?: { chain: string; handle: number; comment?: string };
}

async function listTable(): Promise<NftObj[]> {
  return (await nftJson<NftObj>(['list', 'table', 'bridge', 'nat'], 'nft table bridge nat')) ?? [];
}

export async function setupSpoofcheck(hostIface: string, mac: string, refId: string): Promise<void> {
  await withFirewallLock(() => mustRun(`set up the MAC spoof check of "${refId}"`, 'nft', ['-f', '-'], spoofcheckScript(hostIface, mac, refId)));
}

/** Removes the spoof check of `refId`, under the firewall lock (it reads, then deletes by handle). True when something was removed. */
export function teardownSpoofcheck(refId: string): Promise<boolean> {
  return withFirewallLock(() => teardownSpoofcheckLocked(refId));
}

async function teardownSpoofcheckLocked(refId: string): Promise<boolean> {
  const objs = await listTable();
  const iface = `cni-br-iface-${refId}`;
  const lines: string[] = [];
  for (const o of objs) {
    if (o.rule?.chain === 'PREROUTING' && o.rule.comment === `macspoofchk-${refId}`) lines.push(`delete rule ${T} PREROUTING handle ${o.rule.handle}`);
  }
  const chains = new Set(objs.flatMap((o) => (o.chain ? [o.chain.name] : [])));
  for (const name of [iface, `${iface}-mac`]) if (chains.has(name)) lines.push(`flush chain ${T} ${name}`);
  for (const name of [iface, `${iface}-mac`]) if (chains.has(name)) lines.push(`delete chain ${T} ${name}`);
  if (!lines.length) return false;
  await mustRun(`remove the MAC spoof check of "${refId}"`, 'nft', ['-f', '-'], `${lines.join('\n')}\n`);
  return true;
}

/** Whether the spoof check of `refId` is in place (CHECK). */
export async function hasSpoofcheck(refId: string): Promise<boolean> {
  const objs = await listTable();
  return objs.some((o) => o.rule?.chain === 'PREROUTING' && o.rule.comment === `macspoofchk-${refId}`);
}
