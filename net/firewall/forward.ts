/**
 * The firewall plugin's rules: accept forwarded traffic of an attachment's
 * addresses (so a FORWARD policy of DROP does not cut containers off), a
 * user-owned admin chain consulted first, and optional ingress isolation.
 *
 * Theory of operation
 * -------------------
 * iptables (filter table, per family), the reference's exact text:
 *   FORWARD        -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD   (inserted at 1)
 *   CNI-FORWARD    -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN  (first)
 *                  -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *                  -s <ip>/32 -j ACCEPT
 *   ingressPolicy same-bridge / isolated: CNI-ISOLATION-STAGE-1/2 drop traffic entering the bridge
 *   from elsewhere (and, isolated, between its own ports).
 * One iptables-save reads, one iptables-restore --noflush applies. The per-address rules carry no
 * comment (the reference's DEL must find them), so attachments are told apart by address. When
 * the last attachment goes, burrow removes the chains too (the reference never does), unless the
 * admin chain holds the administrator's own rules.
 *
 * nftables (which the reference lacks, plugins#462): table inet cni_firewall with a forward
 * filter chain, an admin chain it jumps to first, and per-attachment accept rules commented
 * "<id>, net: N, if: I"; each change is one `nft -f` transaction.
 */
import { formatIp, type Cidr, type Family } from '../ip/addr.js';
import { applyTable, readTable, type TableState } from './iptables.js';
import { lockedBackend } from './lock.js';
import { FirewallError, mustRun, nftJson } from './run.js';

export interface FirewallTarget {
  network: string;
  containerId: string;
  ifname: string;
}

export type IngressPolicy = 'open' | 'same-bridge' | 'isolated';

export interface FirewallOptions {
  adminChain: string;
  ingressPolicy: IngressPolicy;
  /** The bridge (prevResult.interfaces[0]) for ingress isolation. */
  bridge?: string;
}

export interface FirewallBackend {
  readonly kind: 'iptables' | 'nftables';
  setup(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<void>;
  teardown(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<boolean>;
  has(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<boolean>;
  gc(network: string, valid: Set<string>, o: FirewallOptions): Promise<void>;
}

const FWD = 'CNI-FORWARD';
const FWD_COMMENT = '"CNI firewall plugin rules"';
const ADMIN_COMMENT = '"CNI firewall plugin admin overrides"';
const STAGE1 = 'CNI-ISOLATION-STAGE-1';
const STAGE2 = 'CNI-ISOLATION-STAGE-2';

function host(ip: Cidr): string {
  return `${formatIp(ip.ip)}/${ip.ip.family === 4 ? 32 : 128}`;
}

/** The two accept rules of one address, as iptables-save prints them. Pure. */
export function iptablesAcceptRules(ip: Cidr): string[] {
  return [`-A ${FWD} -d ${host(ip)} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-A ${FWD} -s ${host(ip)} -j ACCEPT`];
}

/** The isolation rules for a bridge, as iptables-save prints them. Pure. */
export function iptablesIsolationRules(bridge: string, policy: IngressPolicy): { jump: string; stage1: string[]; stage2: string[] } {
  const c = `-m comment --comment "CNI firewall plugin rules (ingressPolicy: ${policy})"`;
  const stage1 = [`-A ${STAGE1} -i ${bridge} ! -o ${bridge} ${c} -j ${STAGE2}`];
  if (policy === 'isolated') stage1.push(`-A ${STAGE1} -i ${bridge} -o ${bridge} ${c} -j DROP`);
  return { jump: `-A FORWARD ${c} -j ${STAGE1}`, stage1, stage2: [`-A ${STAGE2} -o ${bridge} ${c} -j DROP`] };
}

const PER_IP = /^-A CNI-FORWARD -[ds] \S+ (-m conntrack --ctstate RELATED,ESTABLISHED )?-j ACCEPT$/;

export class IptablesFirewall implements FirewallBackend {
  readonly kind = 'iptables';

  private read(family: Family): Promise<TableState> {
    return readTable(family, 'filter');
  }

  private apply(family: Family, lines: string[], action: string): Promise<void> {
    return applyTable(family, 'filter', lines, action);
  }

  async setup(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<void> {
    for (const family of [4, 6] as const) {
      const mine = ips.filter((i) => i.ip.family === family);
      if (!mine.length) continue;
      const state = await this.read(family);
      const have = new Set(state.rules);
      const lines: string[] = [];
      const fwdJump = `-A FORWARD -m comment --comment ${FWD_COMMENT} -j ${FWD}`;
      const adminJump = `-A ${FWD} -m comment --comment ${ADMIN_COMMENT} -j ${o.adminChain}`;
      if (!state.chains.has(o.adminChain)) lines.push(`:${o.adminChain} - [0:0]`);
      if (!state.chains.has(FWD)) lines.push(`:${FWD} - [0:0]`);
      if (!have.has(adminJump)) lines.push(`-I ${FWD} 1${adminJump.slice(`-A ${FWD}`.length)}`);
      for (const ip of mine) for (const r of iptablesAcceptRules(ip)) if (!have.has(r)) lines.push(r);
      if (!have.has(fwdJump)) lines.push(`-I FORWARD 1${fwdJump.slice('-A FORWARD'.length)}`);
      if (o.ingressPolicy !== 'open' && o.bridge) {
        const iso = iptablesIsolationRules(o.bridge, o.ingressPolicy);
        const ret1 = `-A ${STAGE1} -m comment --comment "CNI firewall plugin rules (ingressPolicy: ${o.ingressPolicy})" -j RETURN`;
        const ret2 = `-A ${STAGE2} -m comment --comment "CNI firewall plugin rules (ingressPolicy: ${o.ingressPolicy})" -j RETURN`;
        if (!state.chains.has(STAGE1)) lines.push(`:${STAGE1} - [0:0]`);
        if (!state.chains.has(STAGE2)) lines.push(`:${STAGE2} - [0:0]`);
        for (const r of iso.stage2) if (!have.has(r)) lines.push(`-I ${STAGE2} 1${r.slice(`-A ${STAGE2}`.length)}`);
        if (!have.has(ret2)) lines.push(ret2);
        for (const r of [...iso.stage1].reverse()) if (!have.has(r)) lines.push(`-I ${STAGE1} 1${r.slice(`-A ${STAGE1}`.length)}`);
        if (!have.has(ret1)) lines.push(ret1);
        if (!have.has(iso.jump)) lines.push(`-I FORWARD 1${iso.jump.slice('-A FORWARD'.length)}`);
      }
      await this.apply(family, lines, `allow forwarding for "${t.containerId}" on network "${t.network}"`);
    }
  }

  /** Lines that remove everything once no attachment's rules are left (keeps a non-empty admin chain). */
  private lastLines(state: TableState, adminChain: string): string[] {
    const lines: string[] = [];
    const adminRules = state.rules.filter((r) => r.startsWith(`-A ${adminChain} `));
    for (const r of state.rules) {
      if (r.startsWith('-A FORWARD ') && (r.endsWith(` -j ${FWD}`) || r.endsWith(` -j ${STAGE1}`))) lines.push(`-D${r.slice(2)}`);
    }
    if (state.chains.has(FWD)) lines.push(`-F ${FWD}`, `-X ${FWD}`);
    if (state.chains.has(adminChain) && !adminRules.length) lines.push(`-X ${adminChain}`);
    for (const c of [STAGE1, STAGE2]) if (state.chains.has(c)) lines.push(`-F ${c}`);
    for (const c of [STAGE1, STAGE2]) if (state.chains.has(c)) lines.push(`-X ${c}`);
    return lines;
  }

  async teardown(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<boolean> {
    let removed = false;
    for (const family of [4, 6] as const) {
      const mine = ips.filter((i) => i.ip.family === family);
      if (!mine.length) continue;
      const state = await this.read(family);
      const doomed = new Set(mine.flatMap(iptablesAcceptRules).filter((r) => state.rules.includes(r)));
      const others = state.rules.filter((r) => PER_IP.test(r) && !doomed.has(r));
      // iptables-nft refuses a batch that deletes rules of a chain it also flushes: either delete
      // this attachment's rules, or (the last one) flush and remove everything.
      const lines = others.length ? [...doomed].map((r) => `-D${r.slice(2)}`) : this.lastLines(state, o.adminChain);
      await this.apply(family, lines, `remove forwarding rules of "${t.containerId}" on network "${t.network}"`);
      removed ||= doomed.size > 0;
    }
    return removed;
  }

  async has(_t: FirewallTarget, ips: Cidr[]): Promise<boolean> {
    for (const family of [4, 6] as const) {
      const mine = ips.filter((i) => i.ip.family === family);
      if (!mine.length) continue;
      const have = new Set((await this.read(family)).rules);
      if (!mine.flatMap(iptablesAcceptRules).every((r) => have.has(r))) return false;
    }
    return true;
  }

  async gc(): Promise<void> {
    // The reference's per-address rules name no attachment; GC works from addresses, which the
    // plugin does not have for invalid attachments. DEL (from the runtime's cache) removes them.
  }

}

const NFT = 'inet cni_firewall';

export function nftFirewallComment(t: FirewallTarget): string {
  return `${t.containerId}, net: ${t.network}, if: ${t.ifname}`.replaceAll('"', '').slice(0, 128);
}

/** The setup transaction. Pure. */
export function nftFirewallScript(t: FirewallTarget, ips: Cidr[], o: FirewallOptions, stale: number[]): string {
  const c = `comment "${nftFirewallComment(t)}"`;
  const lines = [
    `add table ${NFT} { comment "CNI firewall plugin (burrow)" ; }`,
    `add chain ${NFT} admin { comment "administrator overrides: consulted first" ; }`,
    `add chain ${NFT} isolation`,
    `add chain ${NFT} isolation_stage2`,
    `add chain ${NFT} attachments`,
    `add chain ${NFT} forward { type filter hook forward priority filter ; policy accept ; }`,
    `flush chain ${NFT} forward`,
    `add rule ${NFT} forward jump isolation`,
    `add rule ${NFT} forward jump admin`,
    `add rule ${NFT} forward jump attachments`,
    ...stale.map((h) => `delete rule ${NFT} attachments handle ${h}`),
  ];
  for (const ip of ips) {
    const fam = ip.ip.family === 4 ? 'ip' : 'ip6';
    lines.push(`add rule ${NFT} attachments ${fam} daddr ${formatIp(ip.ip)} ct state related,established accept ${c}`);
    lines.push(`add rule ${NFT} attachments ${fam} saddr ${formatIp(ip.ip)} accept ${c}`);
  }
  if (o.ingressPolicy !== 'open' && o.bridge) {
    // The reference's two stages: traffic leaving an isolated bridge for another interface is
    // dropped when that interface is another isolated bridge; "isolated" also drops traffic
    // between the ports of one bridge.
    const ic = `comment "ingressPolicy ${o.ingressPolicy} ${o.bridge}"`;
    lines.push(`add rule ${NFT} isolation iifname "${o.bridge}" oifname != "${o.bridge}" jump isolation_stage2 ${ic}`);
    if (o.ingressPolicy === 'isolated') lines.push(`add rule ${NFT} isolation iifname "${o.bridge}" oifname "${o.bridge}" drop ${ic}`);
    lines.push(`add rule ${NFT} isolation_stage2 oifname "${o.bridge}" drop ${ic}`);
  }
  return `${lines.join('\n')}\n`;
}

interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
}

export class NftablesFirewall implements FirewallBackend {
  readonly kind = 'nftables';

  private async rules(): Promise<NftRule[]> {
    const objs = await nftJson<{ rule?: NftRule }>(['list', 'table', 'inet', 'cni_firewall'], 'nft table inet cni_firewall');
    return (objs ?? []).flatMap((o) => (o.rule ? [o.rule] : []));
  }

  async setup(t: FirewallTarget, ips: Cidr[], o: FirewallOptions): Promise<void> {
    const rules = await this.rules();
    const stale = rules.filter((r) => r.chain === 'attachments' && r.comment === nftFirewallComment(t)).map((r) => r.handle);
    const existingIso = rules.some((r) => r.chain === 'isolation' && r.comment === `ingressPolicy ${o.ingressPolicy} ${o.bridge}`);
    await mustRun(`allow forwarding for "${t.containerId}"`, 'nft', ['-f', '-'], nftFirewallScript(t, ips, existingIso ? { ...o, ingressPolicy: 'open' } : o, stale));
  }

  async teardown(t: FirewallTarget): Promise<boolean> {
    const rules = await this.rules();
    const mine = rules.filter((r) => r.chain === 'attachments' && r.comment === nftFirewallComment(t));
    if (!mine.length) return false;
    const others = rules.filter((r) => r.chain === 'attachments' && r.comment !== nftFirewallComment(t));
    const adminRules = rules.filter((r) => r.chain === 'admin');
    const script = !others.length && !adminRules.length
      ? `delete table ${NFT}\n` // the last attachment turns off the lights
      : mine.map((r) => `delete rule ${NFT} attachments handle ${r.handle}\n`).join('');
    await mustRun(`remove forwarding rules of "${t.containerId}"`, 'nft', ['-f', '-'], script);
    return true;
  }

  async has(t: FirewallTarget, ips: Cidr[]): Promise<boolean> {
    return (await this.rules()).filter((r) => r.comment === nftFirewallComment(t)).length >= ips.length * 2;
  }

  async gc(network: string, valid: Set<string>): Promise<void> {
    const stale = (await this.rules()).filter((r) => {
      const m = /^(.*), net: (.*), if: (.*)$/.exec(r.comment ?? '');
      return r.chain === 'attachments' && m && m[2] === network && !valid.has(`${m[1]}/${m[3]}`);
    });
    if (stale.length) await mustRun(`garbage-collect forwarding rules of network "${network}"`, 'nft', ['-f', '-'], stale.map((r) => `delete rule ${NFT} attachments handle ${r.handle}\n`).join(''));
  }
}

export function firewallBackend(kind: 'iptables' | 'nftables'): FirewallBackend {
  if (kind === 'iptables') return lockedBackend(new IptablesFirewall());
  if (kind === 'nftables') return lockedBackend(new NftablesFirewall());
  throw new FirewallError(`unknown firewall backend "${kind as string}"`, '');
}
