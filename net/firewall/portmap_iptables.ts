/**
 * The portmap plugin's rules on iptables.
 *
 * iptables, nat table, per family, in the reference plugin's exact layout:
 *   PREROUTING, OUTPUT  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
 *   CNI-HOSTPORT-DNAT   one multiport jump per protocol (<= 15 ports) to CNI-DN-<hash(net+id)>,
 *                       commented `dnat name: "N" id: "ID"`
 *   CNI-DN-<hash>       per mapping: hairpin and (IPv4) localhost SETMARK rules when snat, then DNAT
 *   CNI-HOSTPORT-SETMARK / -MASQ and the POSTROUTING jump: masquerade what was marked
 * A single mapping is written exactly as the reference writes it, so either side's DEL removes
 * the other's ADD. A run of consecutive host ports with a constant offset to the container ports
 * (podman expands -p 8000-8999 into 1000 mappings) becomes one ranged rule ("--dport 8000:8999",
 * DNAT with port shift), so 1000 ports cost about what one does. The reference's DEL still removes
 * these, because it deletes the whole CNI-DN chain and every jump to it.
 *
 * One iptables-save reads the state and one iptables-restore --noflush batch applies a change,
 * per family. Unlike the reference, teardown also removes the shared chains once no attachment
 * uses them, so nothing is left behind.
 */
import { formatIp, networkOf, type Cidr, type Family } from '../ip/addr.js';
import { hashedChainName } from './names.js';
import { applyTable, readTable, type TableState as NatState } from './iptables.js';
import { FirewallError } from './run.js';
import { mappingsFor, portRuns, type PortMapping, type Protocol, type PortmapBackend, type PortmapOptions, type PortmapTarget } from './portmap.js';

export const DNAT_CHAIN = 'CNI-HOSTPORT-DNAT';
export const SETMARK_CHAIN = 'CNI-HOSTPORT-SETMARK';
export const MASQ_CHAIN = 'CNI-HOSTPORT-MASQ';

export function dnChainName(network: string, containerId: string): string {
  return hashedChainName('DN-', network, containerId);
}

function dnComment(t: PortmapTarget): string {
  return `"dnat name: \\"${t.network}\\" id: \\"${t.containerId}\\""`;
}

function markText(o: PortmapOptions): string {
  return `0x${o.markBit.toString(16)}/0x${o.markBit.toString(16)}`;
}

function hostSuffix(family: Family): string {
  return family === 4 ? '/32' : '/128';
}

/** The rules of the attachment's CNI-DN chain and its CNI-HOSTPORT-DNAT jumps, as iptables-save prints them. Pure. */
export function iptablesPortmapRules(t: PortmapTarget, ctrIp: Cidr, mappings: PortMapping[], o: PortmapOptions): { dn: string[]; jumps: string[] } {
  const family = ctrIp.ip.family;
  const chain = dnChainName(t.network, t.containerId);
  const setmark = o.externalSetMarkChain ?? SETMARK_CHAIN;
  const ctrNet = `${formatIp(networkOf(ctrIp))}/${ctrIp.prefixLen}`;
  const ctr = formatIp(ctrIp.ip);
  const dn: string[] = [];
  const mine = mappingsFor(mappings, family);
  for (const r of portRuns(mine)) {
    const d = r.hostIP ? ` -d ${r.hostIP}${hostSuffix(family)}` : '';
    const ports = r.hostStart === r.hostEnd ? `${r.hostStart}` : `${r.hostStart}:${r.hostEnd}`;
    const match = `-p ${r.protocol} -m ${r.protocol} --dport ${ports}`;
    if (o.snat) {
      dn.push(o.masqAll ? `-A ${chain}${d} ${match} -j ${setmark}` : `-A ${chain} -s ${ctrNet}${d} ${match} -j ${setmark}`);
      if (family === 4 && !o.masqAll) dn.push(`-A ${chain} -s 127.0.0.1/32${d} ${match} -j ${setmark}`);
    }
    const host = family === 4 ? ctr : `[${ctr}]`;
    let to: string;
    if (r.hostStart === r.hostEnd) to = `${host}:${r.containerStart}`;
    else if (r.containerStart === r.hostStart) to = host; // same ports: DNAT keeps the port
    else to = `${host}:${r.containerStart}-${r.containerStart + (r.hostEnd - r.hostStart)}/${r.hostStart}`;
    dn.push(`-A ${chain}${d} ${match} -j DNAT --to-destination ${to}`);
  }
  const conditions = (family === 4 ? o.conditionsV4 : o.conditionsV6) ?? [];
  const jumps: string[] = [];
  for (const proto of ['sctp', 'tcp', 'udp'] as Protocol[]) {
    const specs: { text: string; weight: number }[] = [];
    // As the reference: the jump lists the ports of every mapping, also those of the other family's host IPs.
    for (const r of portRuns(mappings)) {
      if (r.protocol !== proto) continue;
      const text = r.hostStart === r.hostEnd ? `${r.hostStart}` : `${r.hostStart}:${r.hostEnd}`;
      if (!specs.some((s) => s.text === text)) specs.push({ text, weight: r.hostStart === r.hostEnd ? 1 : 2 });
    }
    // multiport takes at most 15 ports; a range counts as two.
    let batch: string[] = [];
    let weight = 0;
    const flush = () => {
      if (!batch.length) return;
      const cond = conditions.length ? ` ${conditions.join(' ')}` : '';
      jumps.push(`-A ${DNAT_CHAIN} -p ${proto} -m comment --comment ${dnComment(t)}${cond} -m multiport --dports ${batch.join(',')} -j ${chain}`);
      batch = [];
      weight = 0;
    };
    for (const s of specs) {
      if (weight + s.weight > 15) flush();
      batch.push(s.text);
      weight += s.weight;
    }
    flush();
  }
  return { dn, jumps };
}

/** Mapped ports of other attachments, from their CNI-DN chains: "proto/port/hostIP" keys. */
function takenPorts(state: NatState, ownChain: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of state.rules) {
    const m = /^-A (CNI-DN-[0-9a-f]+)(?: -d (\S+?)\/\d+)? -p (\w+) -m \w+ --dport (\d+)(?::(\d+))? -j DNAT/.exec(r);
    if (!m || m[1] === ownChain) continue;
    for (let p = Number(m[4]); p <= Number(m[5] ?? m[4]); p++) out.set(`${m[3]}/${p}/${m[2] ?? ''}`, m[1]);
  }
  return out;
}

/** The owner of a DN chain, from the comment of its jump. */
function dnOwners(state: NatState): Map<string, { network: string; containerId: string }> {
  const out = new Map<string, { network: string; containerId: string }>();
  for (const r of state.rules) {
    const m = /^-A CNI-HOSTPORT-DNAT .*--comment "dnat name: \\"((?:[^"\\]|\\.)*)\\" id: \\"((?:[^"\\]|\\.)*)\\"".* -j (CNI-DN-[0-9a-f]+)$/.exec(r);
    if (m) out.set(m[3], { network: m[1], containerId: m[2] });
  }
  return out;
}

export class IptablesPortmap implements PortmapBackend {
  readonly kind = 'iptables';

  private read(family: Family): Promise<NatState> {
    return readTable(family, 'nat');
  }

  private apply(family: Family, lines: string[], action: string): Promise<void> {
    return applyTable(family, 'nat', lines, action);
  }

  /** Lines that remove one DN chain and every jump to it. */
  private dropChain(state: NatState, chain: string): string[] {
    const lines = state.rules.filter((r) => r.endsWith(` -j ${chain}`)).map((r) => `-D${r.slice(2)}`);
    if (state.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
    return lines;
  }

  /** True when no attachment is left once the DN chains in `removed` go: the shared chains can go too. */
  private lastOnes(state: NatState, removed: Set<string>): boolean {
    const left = [...state.chains].some((c) => c.startsWith('CNI-DN-') && !removed.has(c));
    const otherJumps = state.rules.some((r) => r.startsWith(`-A ${DNAT_CHAIN} `) && ![...removed].some((c) => r.endsWith(` -j ${c}`)));
    return !left && !otherJumps && state.chains.has(DNAT_CHAIN);
  }

  /**
   * Lines that remove the DN chains in `chains`, with their jumps; and, when they were the last,
   * the shared chains and their entry jumps. iptables-nft rejects deleting a chain whose jump is
   * deleted in the same batch as its parent chain is flushed, so in that case the parent is
   * flushed first (which drops the jumps) instead of deleting the jumps one by one.
   */
  private teardownLines(state: NatState, chains: Set<string>): string[] {
    const present = [...chains].filter((c) => state.chains.has(c) || state.rules.some((r) => r.endsWith(` -j ${c}`)));
    if (!present.length) return [];
    if (!this.lastOnes(state, chains)) return present.flatMap((c) => this.dropChain(state, c));
    const lines: string[] = [];
    for (const r of state.rules) {
      if (/^-A (PREROUTING|OUTPUT) .*-j CNI-HOSTPORT-DNAT$/.test(r) || /^-A POSTROUTING .*-j CNI-HOSTPORT-MASQ$/.test(r)) lines.push(`-D${r.slice(2)}`);
    }
    lines.push(`-F ${DNAT_CHAIN}`);
    for (const c of present) {
      lines.push(...state.rules.filter((r) => r.endsWith(` -j ${c}`) && !r.startsWith(`-A ${DNAT_CHAIN} `)).map((r) => `-D${r.slice(2)}`));
      if (state.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`);
    }
    lines.push(`-X ${DNAT_CHAIN}`);
    for (const c of [MASQ_CHAIN, SETMARK_CHAIN]) if (state.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`);
    return lines;
  }

  async setup(t: PortmapTarget, ctrIp: Cidr, mappings: PortMapping[], o: PortmapOptions): Promise<void> {
    const family = ctrIp.ip.family;
    const { dn, jumps } = iptablesPortmapRules(t, ctrIp, mappings, o);
    if (!dn.length) return;
    const chain = dnChainName(t.network, t.containerId);
    const state = await this.read(family);
    const taken = takenPorts(state, chain);
    for (const m of mappingsFor(mappings, family)) {
      const clash = [`${m.protocol}/${m.hostPort}/${m.hostIP}`, `${m.protocol}/${m.hostPort}/`].map((k) => taken.get(k)).find(Boolean)
        ?? (!m.hostIP ? [...taken.keys()].find((k) => k.startsWith(`${m.protocol}/${m.hostPort}/`)) : undefined);
      if (clash) {
        const owner = dnOwners(state).get(taken.get(clash) ?? clash);
        throw new FirewallError(`host port ${m.hostPort}/${m.protocol}${m.hostIP ? ` on ${m.hostIP}` : ''} is already mapped${owner ? ` to container "${owner.containerId}" of network "${owner.network}"` : ''}`, '');
      }
    }
    const lines: string[] = [];
    const have = new Set(state.rules);
    const markRule = `-A ${SETMARK_CHAIN} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark ${markText(o)}`;
    const masqRule = `-A ${MASQ_CHAIN} -m mark --mark ${markText(o)} -j MASQUERADE`;
    const masqJump = `-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j ${MASQ_CHAIN}`;
    if (o.snat && !o.externalSetMarkChain) {
      if (!state.chains.has(SETMARK_CHAIN)) lines.push(`:${SETMARK_CHAIN} - [0:0]`);
      if (!have.has(markRule)) lines.push(markRule);
      if (!state.chains.has(MASQ_CHAIN)) lines.push(`:${MASQ_CHAIN} - [0:0]`);
      if (!have.has(masqRule)) lines.push(masqRule);
      if (!have.has(masqJump)) lines.push(`-I POSTROUTING 1${masqJump.slice('-A POSTROUTING'.length)}`);
    }
    if (!state.chains.has(DNAT_CHAIN)) lines.push(`:${DNAT_CHAIN} - [0:0]`);
    for (const entry of ['PREROUTING', 'OUTPUT']) {
      const r = `-A ${entry} -m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}`;
      if (!have.has(r)) lines.push(r);
    }
    // A repeated ADD replaces the attachment's chain and jumps (the reference tears down first too).
    lines.push(...state.rules.filter((r) => r.endsWith(` -j ${chain}`)).map((r) => `-D${r.slice(2)}`));
    lines.push(`:${chain} - [0:0]`, ...dn, ...jumps);
    await this.apply(family, lines, `map ports of "${t.containerId}" on network "${t.network}"`);
  }

  async teardown(t: PortmapTarget): Promise<boolean> {
    const chains = new Set([dnChainName(t.network, t.containerId), hashedChainName('SN-', t.network, t.containerId)]);
    let removed = false;
    for (const family of [4, 6] as const) {
      const lines = this.teardownLines(await this.read(family), chains);
      await this.apply(family, lines, `remove port mappings of "${t.containerId}" on network "${t.network}"`);
      removed ||= lines.length > 0;
    }
    return removed;
  }

  async has(t: PortmapTarget, family: Family): Promise<boolean> {
    const chain = dnChainName(t.network, t.containerId);
    const state = await this.read(family);
    return state.chains.has(chain) && state.rules.some((r) => r.startsWith(`-A ${DNAT_CHAIN} `) && r.endsWith(` -j ${chain}`));
  }

  async gc(network: string, validIds: Set<string>): Promise<void> {
    for (const family of [4, 6] as const) {
      const state = await this.read(family);
      const stale = new Set<string>();
      for (const [chain, owner] of dnOwners(state)) {
        if (owner.network === network && !validIds.has(owner.containerId) && chain === dnChainName(network, owner.containerId)) stale.add(chain);
      }
      if (!stale.size) continue;
      const lines = this.teardownLines(state, stale);
      await this.apply(family, lines, `garbage-collect port mappings of network "${network}"`);
    }
  }

}
