/**
 * The portmap plugin's rules on nftables.
 *
 * nftables: tables ip/ip6 cni_hostport as the upstream plugin lays them out (hostports,
 * hostip_hostports, hostports_all, prerouting/output dstnat, masquerading srcnat); every rule
 * is commented "<id>, net: <N>, if: <ifname>" so DEL and GC remove exactly one attachment's rules
 * (plugins#752); rules commented with the bare container ID (upstream's) are removed too.
 */
import { formatIp, networkOf, type Cidr, type Family } from '../ip/addr.js';
import { FirewallError, mustRun, nftJson, runTool } from './run.js';
import { mappingsFor, portRuns, type PortMapping, type PortmapBackend, type PortmapOptions, type PortmapTarget } from './portmap.js';

const NFT_TABLE = 'cni_hostport';

export function nftComment(t: PortmapTarget): string {
  return `${t.containerId}, net: ${t.network}, if: ${t.ifname}`.replaceAll('"', '').slice(0, 128);
}

/** The nft transaction of a setup. Pure. */
export function nftPortmapScript(t: PortmapTarget, ctrIp: Cidr, mappings: PortMapping[], o: PortmapOptions, staleHandles: { chain: string; handle: number }[]): string {
  const family = ctrIp.ip.family;
  const fam = family === 4 ? 'ip' : 'ip6';
  const T = `${fam} ${NFT_TABLE}`;
  const c = `comment "${nftComment(t)}"`;
  const ctr = formatIp(ctrIp.ip);
  const cond = ((family === 4 ? o.conditionsV4 : o.conditionsV6) ?? []).join(' ');
  const lines = [
    `add table ${T} { comment "CNI portmap plugin" ; }`,
    `add chain ${T} hostports`,
    `add chain ${T} hostip_hostports`,
    `add chain ${T} hostports_all`,
    `add chain ${T} prerouting { type nat hook prerouting priority -100 ; }`,
    `add chain ${T} output { type nat hook output priority -100 ; }`,
    `add chain ${T} masquerading { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${T} hostports_all`,
    `add rule ${T} hostports_all jump hostip_hostports`,
    `add rule ${T} hostports_all jump hostports`,
    `flush chain ${T} prerouting`,
    `add rule ${T} prerouting ${cond ? `${cond} ` : ''}fib daddr type local jump hostports_all`,
    `flush chain ${T} output`,
    `add rule ${T} output ${cond ? `${cond} ` : ''}fib daddr type local jump hostports_all`,
    ...staleHandles.map((s) => `delete rule ${T} ${s.chain} handle ${s.handle}`),
  ];
  for (const r of portRuns(mappingsFor(mappings, family))) {
    const d = r.hostIP ? `${fam} daddr ${r.hostIP} ` : '';
    const ports = r.hostStart === r.hostEnd ? `${r.hostStart}` : `${r.hostStart}-${r.hostEnd}`;
    let to: string;
    const host = family === 4 ? ctr : `[${ctr}]`;
    if (r.hostStart === r.hostEnd) to = `${host}:${r.containerStart}`;
    else if (r.containerStart === r.hostStart) to = host;
    else {
      const pairs: string[] = [];
      for (let p = r.hostStart; p <= r.hostEnd; p++) pairs.push(`${p} : ${r.containerStart + (p - r.hostStart)}`);
      to = `${family === 4 ? ctr : `[${ctr}]`} : ${r.protocol} dport map { ${pairs.join(', ')} }`;
    }
    lines.push(`add rule ${T} ${r.hostIP ? 'hostip_hostports' : 'hostports'} ${d}${r.protocol} dport ${ports} dnat to ${to} ${c}`);
  }
  if (o.snat) {
    // Like the iptables rules: the container's whole subnet is masqueraded on hairpin, so a
    // neighbour on the same bridge reaching a published port gets replies through the host.
    const src = o.masqAll ? (family === 4 ? '0.0.0.0/0' : '::/0') : `${formatIp(networkOf(ctrIp))}/${ctrIp.prefixLen}`;
    lines.push(`add rule ${T} masquerading ${fam} saddr ${src} ${fam} daddr ${ctr} masquerade ${c}`);
    if (family === 4 && !o.masqAll) lines.push(`add rule ${T} masquerading ip saddr 127.0.0.1 ip daddr ${ctr} masquerade ${c}`);
  }
  return `${lines.join('\n')}\n`;
}

interface NftRuleObj {
  rule?: { family: string; chain: string; handle: number; comment?: string };
}

export class NftablesPortmap implements PortmapBackend {
  readonly kind = 'nftables';

  private async rules(family: Family): Promise<{ chain: string; handle: number; comment?: string }[]> {
    const fam = family === 4 ? 'ip' : 'ip6';
    const objs = await nftJson<NftRuleObj>(['list', 'table', fam, NFT_TABLE], `nft table ${fam} ${NFT_TABLE}`);
    return (objs ?? []).flatMap((o) => (o.rule ? [o.rule] : []));
  }

  private mine(t: PortmapTarget, comment?: string): boolean {
    return comment === nftComment(t) || comment === t.containerId;
  }

  /** Host ports other attachments map, from the listing: "proto/port/hostIP" -> owner comment. */
  private async taken(family: Family, t: PortmapTarget): Promise<Map<string, string>> {
    const fam = family === 4 ? 'ip' : 'ip6';
    const r = await runTool('nft', ['list', 'table', fam, NFT_TABLE]);
    const out = new Map<string, string>();
    if (r.code !== 0) return out;
    for (const line of r.stdout.split('\n')) {
      const m = /(?:ip6? daddr (\S+) )?(tcp|udp|sctp) dport (\d+)(?:-(\d+))? dnat .* comment "([^"]*)"/.exec(line);
      if (!m || this.mine(t, m[5])) continue;
      for (let p = Number(m[3]); p <= Number(m[4] ?? m[3]); p++) out.set(`${m[2]}/${p}/${m[1] ?? ''}`, m[5]);
    }
    return out;
  }

  async setup(t: PortmapTarget, ctrIp: Cidr, mappings: PortMapping[], o: PortmapOptions): Promise<void> {
    const mine = mappingsFor(mappings, ctrIp.ip.family);
    if (!mine.length) return;
    const taken = await this.taken(ctrIp.ip.family, t);
    for (const m of mine) {
      const owner = taken.get(`${m.protocol}/${m.hostPort}/${m.hostIP}`) ?? taken.get(`${m.protocol}/${m.hostPort}/`)
        ?? (!m.hostIP ? [...taken].find(([k]) => k.startsWith(`${m.protocol}/${m.hostPort}/`))?.[1] : undefined);
      if (owner) {
        const id = owner.split(',')[0];
        throw new FirewallError(`host port ${m.hostPort}/${m.protocol}${m.hostIP ? ` on ${m.hostIP}` : ''} is already mapped to container "${id}"`, '');
      }
    }
    const stale = (await this.rules(ctrIp.ip.family)).filter((r) => this.mine(t, r.comment));
    await mustRun(`map ports of "${t.containerId}" on network "${t.network}"`, 'nft', ['-f', '-'], nftPortmapScript(t, ctrIp, mappings, o, stale));
  }

  async teardown(t: PortmapTarget): Promise<boolean> {
    let removed = false;
    for (const family of [4, 6] as const) {
      const fam = family === 4 ? 'ip' : 'ip6';
      const rules = await this.rules(family);
      const mine = rules.filter((r) => this.mine(t, r.comment));
      if (!mine.length) continue;
      const lines = mine.map((r) => `delete rule ${fam} ${NFT_TABLE} ${r.chain} handle ${r.handle}`);
      // The last attachment takes the table with it.
      if (rules.every((r) => !r.comment || this.mine(t, r.comment))) lines.push(`delete table ${fam} ${NFT_TABLE}`);
      await mustRun(`remove port mappings of "${t.containerId}"`, 'nft', ['-f', '-'], `${lines.join('\n')}\n`);
      removed = true;
    }
    return removed;
  }

  async has(t: PortmapTarget, family: Family): Promise<boolean> {
    return (await this.rules(family)).some((r) => this.mine(t, r.comment) && r.chain !== 'masquerading');
  }

  async gc(network: string, validIds: Set<string>): Promise<void> {
    for (const family of [4, 6] as const) {
      const fam = family === 4 ? 'ip' : 'ip6';
      const stale = (await this.rules(family)).filter((r) => {
        const m = /^(.*), net: (.*), if: .*$/.exec(r.comment ?? '');
        return m && m[2] === network && !validIds.has(m[1]);
      });
      if (stale.length) await mustRun(`garbage-collect port mappings of network "${network}"`, 'nft', ['-f', '-'], stale.map((r) => `delete rule ${fam} ${NFT_TABLE} ${r.chain} handle ${r.handle}\n`).join(''));
    }
  }
}
