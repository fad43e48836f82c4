/**
 * Masquerading for bridge attachments (the reference's ipMasq), with an
 * iptables and an nftables backend that write exactly the rules the reference
 * writes, so either implementation's DEL removes the other's ADD.
 *
 * Theory of operation
 * -------------------
 * iptables (nat table, per family): a chain CNI-<hash(net+id)> holding
 * "-d <subnet> ACCEPT" and "! -d <multicast> MASQUERADE" for each address,
 * and a POSTROUTING jump "-s <ip> -j <chain>" per address, all commented
 * `name: "N" id: "ID"`. One `iptables-save -t nat` reads the state, one
 * `iptables-restore --noflush` batch applies the change; nothing runs when
 * there is nothing to do. Teardown needs no addresses: it deletes every
 * POSTROUTING jump to the chain, then the chain (so it works after the netns
 * is gone, where the reference leaks). GC reads the comments of every CNI-
 * chain and removes those of the network whose container is not valid.
 *
 * nftables: table inet cni_plugins_masquerade, chain masq_checks with one rule
 * per address commented "<nethash>-<insthash>, net: N, if: I, id: ID", and a
 * postrouting base chain that skips multicast and jumps there. Each change is
 * one atomic `nft -f -` transaction.
 */
import { formatIp, networkOf, type Cidr } from '../ip/addr.js';
import { masqChainName, masqComment, nftInstanceHash, nftMasqComment, nftNetworkHash } from './names.js';
import { applyTable, readTable, tryApplyTable, type TableState as NatState } from './iptables.js';
import { lockedBackend } from './lock.js';
import { mustRun, nftJson, pickBackend } from './run.js';

export interface MasqTarget {
  network: string;
  ifname: string;
  containerId: string;
}

export interface GcAttachment {
  containerID: string;
  ifname: string;
}

export interface MasqBackend {
  readonly kind: 'iptables' | 'nftables' | 'none';
  /** Adds the attachment's rules for `ips` (container addresses with their prefix). Idempotent. */
  setup(t: MasqTarget, ips: Cidr[]): Promise<void>;
  /** Removes the attachment's rules; `ips` may be empty (unknown). True when anything was removed. */
  teardown(t: MasqTarget, ips: Cidr[]): Promise<boolean>;
  /** Whether the attachment's rules for `ips` are all present (CHECK). */
  has(t: MasqTarget, ips: Cidr[]): Promise<boolean>;
  /** Removes rules of `network` whose attachment is not in `valid`. */
  gc(network: string, valid: GcAttachment[]): Promise<void>;
}

const MULTICAST = { 4: '224.0.0.0/4', 6: 'ff00::/8' } as const;

/** Formats a comment as iptables-save prints it (and iptables-restore reads it). */
function quoted(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function hostPrefix(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** The three rules of one address, in iptables-save's normal form. Pure; exported for golden tests. */
export function iptablesMasqRules(t: MasqTarget, ip: Cidr): { chainRules: string[]; jump: string } {
  const chain = masqChainName(t.network, t.containerId);
  const c = `-m comment --comment ${quoted(masqComment(t.network, t.containerId))}`;
  const net = `${formatIp(networkOf(ip))}/${ip.prefixLen}`;
  return {
    chainRules: [`-A ${chain} -d ${net} ${c} -j ACCEPT`, `-A ${chain} ! -d ${MULTICAST[ip.ip.family]} ${c} -j MASQUERADE`],
    jump: `-A POSTROUTING -s ${formatIp(ip.ip)}/${hostPrefix(ip.ip.family)} ${c} -j ${chain}`,
  };
}

/** Parses `name: "N" id: "ID"` out of a rule line. */
export function parseMasqComment(rule: string): { network: string; containerId: string } | null {
  const m = /--comment "name: \\"((?:[^"\\]|\\.)*)\\" id: \\"((?:[^"\\]|\\.)*)\\""/.exec(rule);
  return m ? { network: m[1], containerId: m[2] } : null;
}

export class IptablesMasq implements MasqBackend {
  readonly kind = 'iptables';

  private read(family: 4 | 6): Promise<NatState> {
    return readTable(family, 'nat');
  }

  private apply(family: 4 | 6, lines: string[], action: string): Promise<void> {
    return applyTable(family, 'nat', lines, action);
  }

  /**
   * One iptables-restore per family and nothing else: the chain is new for a new attachment, so
   * declaring it (which flushes it if a repeated ADD finds it) and appending its rules needs no
   * read. A repeated ADD can duplicate the POSTROUTING jump; teardown removes every jump to the
   * chain, so duplicates never outlive the attachment.
   */
  async setup(t: MasqTarget, ips: Cidr[]): Promise<void> {
    const chain = masqChainName(t.network, t.containerId);
    for (const family of [4, 6] as const) {
      const mine = ips.filter((i) => i.ip.family === family);
      if (!mine.length) continue;
      const lines = [`:${chain} - [0:0]`];
      const jumps: string[] = [];
      for (const ip of mine) {
        const r = iptablesMasqRules(t, ip);
        for (const rule of r.chainRules) if (!lines.includes(rule)) lines.push(rule);
        if (!jumps.includes(r.jump)) jumps.push(r.jump);
      }
      await this.apply(family, [...lines, ...jumps], `set up masquerading for "${t.containerId}" on network "${t.network}"`);
    }
  }

  private teardownLines(state: NatState, chain: string): string[] {
    const lines = state.rules.filter((r) => r.startsWith('-A POSTROUTING ') && r.endsWith(` -j ${chain}`)).map((r) => `-D${r.slice(2)}`);
    if (state.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
    return lines;
  }

  /**
   * With the attachment's addresses (from prevResult) a single iptables-restore deletes exactly
   * the jumps ADD wrote and the chain. Without them, or when that batch fails because the state
   * differs (already gone, or written differently), it reads the table and deletes every jump
   * to the chain, then the chain, for both families.
   */
  async teardown(t: MasqTarget, ips: Cidr[] = []): Promise<boolean> {
    const chain = masqChainName(t.network, t.containerId);
    if (ips.length) {
      const families = [...new Set(ips.map((i) => i.ip.family))];
      let ok = true;
      for (const family of families) {
        const jumps = [...new Set(ips.filter((i) => i.ip.family === family).map((ip) => iptablesMasqRules(t, ip).jump))];
        const lines = [...jumps.map((j) => `-D${j.slice(2)}`), `-F ${chain}`, `-X ${chain}`];
        ok &&= await tryApplyTable(family, 'nat', lines);
      }
      if (ok && families.length === 2) return true;
      if (ok) {
        // The other family may still hold rules from addresses prevResult did not list.
        const other = families[0] === 4 ? 6 : 4;
        await this.apply(other, this.teardownLines(await this.read(other), chain), `remove masquerading of "${t.containerId}" on network "${t.network}"`);
        return true;
      }
    }
    let removed = false;
    for (const family of [4, 6] as const) {
      const lines = this.teardownLines(await this.read(family), chain);
      await this.apply(family, lines, `remove masquerading of "${t.containerId}" on network "${t.network}"`);
      removed ||= lines.length > 0;
    }
    return removed;
  }

  async has(t: MasqTarget, ips: Cidr[]): Promise<boolean> {
    for (const family of [4, 6] as const) {
      const mine = ips.filter((i) => i.ip.family === family);
      if (!mine.length) continue;
      const have = new Set((await this.read(family)).rules);
      for (const ip of mine) {
        const r = iptablesMasqRules(t, ip);
        if (![...r.chainRules, r.jump].every((x) => have.has(x))) return false;
      }
    }
    return true;
  }

  async gc(network: string, valid: GcAttachment[]): Promise<void> {
    const keep = new Set(valid.map((a) => a.containerID));
    for (const family of [4, 6] as const) {
      const state = await this.read(family);
      const stale = new Set<string>();
      for (const rule of state.rules) {
        const chain = /^-A (CNI-[0-9a-f]{24}) /.exec(rule)?.[1];
        const owner = chain ? parseMasqComment(rule) : null;
        if (chain && owner && owner.network === network && !keep.has(owner.containerId) && chain === masqChainName(network, owner.containerId)) stale.add(chain);
      }
      const lines = [...stale].flatMap((chain) => this.teardownLines(state, chain));
      await this.apply(family, lines, `garbage-collect masquerading of network "${network}"`);
    }
  }
}

const NFT_TABLE = 'cni_plugins_masquerade';
const NFT_CHAIN = 'masq_checks';

interface NftRule {
  handle: number;
  comment?: string;
}

/** The nft script of a setup. Pure; exported for golden tests. */
export function nftMasqSetupScript(t: MasqTarget, ips: Cidr[], staleHandles: number[]): string {
  const T = `inet ${NFT_TABLE}`;
  const lines = [
    `add table ${T} { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }`,
    `add chain ${T} ${NFT_CHAIN} { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${T} postrouting`,
    `add rule ${T} postrouting ip daddr == 224.0.0.0/4 return`,
    `add rule ${T} postrouting ip6 daddr == ff00::/8 return`,
    `add rule ${T} postrouting goto ${NFT_CHAIN}`,
    ...staleHandles.map((h) => `delete rule ${T} ${NFT_CHAIN} handle ${h}`),
  ];
  for (const ip of ips) {
    const fam = ip.ip.family === 4 ? 'ip' : 'ip6';
    const net = `${formatIp(networkOf(ip))}/${ip.prefixLen}`;
    lines.push(`add rule ${T} ${NFT_CHAIN} ${fam} saddr == ${formatIp(ip.ip)} ${fam} daddr != ${net} masquerade comment "${nftMasqComment(t.network, t.ifname, t.containerId)}"`);
  }
  return `${lines.join('\n')}\n`;
}

export class NftablesMasq implements MasqBackend {
  readonly kind = 'nftables';

  private async rules(): Promise<NftRule[]> {
    const objs = await nftJson<{ rule?: NftRule }>(['list', 'chain', 'inet', NFT_TABLE, NFT_CHAIN], `nft chain ${NFT_TABLE}/${NFT_CHAIN}`);
    return (objs ?? []).flatMap((x) => (x.rule ? [x.rule] : []));
  }

  private async run(script: string, action: string): Promise<void> {
    await mustRun(action, 'nft', ['-f', '-'], script);
  }

  async setup(t: MasqTarget, ips: Cidr[]): Promise<void> {
    if (!ips.length) return;
    const prefix = nftInstanceHash(t.network, t.ifname, t.containerId);
    const stale = (await this.rules()).filter((r) => r.comment?.startsWith(prefix)).map((r) => r.handle);
    await this.run(nftMasqSetupScript(t, ips, stale), `set up masquerading for "${t.containerId}" on network "${t.network}"`);
  }

  private async deleteHandles(handles: number[], action: string): Promise<boolean> {
    if (!handles.length) return false;
    await this.run(handles.map((h) => `delete rule inet ${NFT_TABLE} ${NFT_CHAIN} handle ${h}\n`).join(''), action);
    return true;
  }

  async teardown(t: MasqTarget): Promise<boolean> {
    const prefix = nftInstanceHash(t.network, t.ifname, t.containerId);
    const handles = (await this.rules()).filter((r) => r.comment?.startsWith(prefix)).map((r) => r.handle);
    return this.deleteHandles(handles, `remove masquerading of "${t.containerId}" on network "${t.network}"`);
  }

  async has(t: MasqTarget, ips: Cidr[]): Promise<boolean> {
    const prefix = nftInstanceHash(t.network, t.ifname, t.containerId);
    return (await this.rules()).filter((r) => r.comment?.startsWith(prefix)).length >= ips.length;
  }

  async gc(network: string, valid: GcAttachment[]): Promise<void> {
    const keep = new Set(valid.map((a) => nftMasqComment(network, a.ifname, a.containerID)));
    const prefix = nftNetworkHash(network);
    const handles = (await this.rules()).filter((r) => r.comment?.startsWith(prefix) && !keep.has(r.comment)).map((r) => r.handle);
    await this.deleteHandles(handles, `garbage-collect masquerading of network "${network}"`);
  }
}

export class NoMasq implements MasqBackend {
  readonly kind = 'none';
  async setup(): Promise<void> {}
  async teardown(): Promise<boolean> {
    return false;
  }
  async has(): Promise<boolean> {
    return true;
  }
  async gc(): Promise<void> {}
}

/**
 * The backend for `preference` ("iptables", "nftables", "none" or auto). Auto prefers iptables
 * when its tools are installed (what the reference does, so cross-implementation DEL works)
 * and nftables otherwise, which also covers nft-only hosts (plugins#1280).
 */
export function masqBackend(preference?: string): MasqBackend {
  switch (preference) {
    case 'iptables':
      return lockedBackend(new IptablesMasq());
    case 'nftables':
      return lockedBackend(new NftablesMasq());
    case 'none':
      return new NoMasq();
    default:
      return lockedBackend(pickBackend(undefined, 'ipMasq') === 'iptables' ? new IptablesMasq() : new NftablesMasq());
  }
}
