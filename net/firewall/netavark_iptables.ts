/**
 * netavark 1.4's iptables rules, as its firewall driver writes them, so that burrow's netavark
 * drop-in and Debian's netavark can each tear down the other's setup. Pure: the rule text is
 * exactly what iptables-save prints for netavark's rules (captured from netavark 1.4.0 on
 * Debian 12); runtime/compat/netavark.ts reads the tables and applies the difference.
 *
 * Per network (subnet S, bridge B, H = the first 13 characters of the uppercase hex SHA-512 of
 * the network's name):
 * - filter: FORWARD → NETAVARK_FORWARD (comment "netavark firewall plugin rules"), which accepts
 *   `-d S` RELATED,ESTABLISHED and `-s S`. With isolate: FORWARD (first) → NETAVARK_ISOLATION_1
 *   (`-i B ! -o B` → NETAVARK_ISOLATION_2, which drops `-o B`).
 * - nat: POSTROUTING `-s S` → NETAVARK-H, which accepts `-d S` and masquerades the rest except
 *   multicast. The shared chains NETAVARK-HOSTPORT-DNAT (from PREROUTING and OUTPUT for local
 *   destinations), -MASQ (POSTROUTING, first: masquerades mark 0x2000) and -SETMARK always exist.
 * - Per port mapping: HOSTPORT-DNAT → NETAVARK-DN-H (comment "dnat name: NET id: CTRID"); the DN
 *   chain marks hairpin and localhost sources, then DNATs to the container. A DNS port other
 *   than 53 gets udp/53 to each gateway DNATed to it.
 */
import { digestHex } from '../../native/mod.js';

export type Family = 4 | 6;

/** One rule: `-A chain spec` as iptables-save prints it; `first` rules are inserted at the top. */
export interface Rule {
  table: 'filter' | 'nat';
  chain: string;
  spec: string;
  first?: boolean;
}

export interface NetavarkPort {
  host_ip: string;
  container_port: number;
  host_port: number;
  range: number;
  protocol: string;
}

export interface NetavarkFwNetwork {
  name: string;
  bridge: string;
  /** this family's subnets, as CIDR text */
  subnets: string[];
  /** this family's gateways */
  gateways: string[];
  isolate: boolean;
}

export const FORWARD_CHAIN = 'NETAVARK_FORWARD';
export const ISOLATION_1 = 'NETAVARK_ISOLATION_1';
export const ISOLATION_2 = 'NETAVARK_ISOLATION_2';
export const HOSTPORT_DNAT = 'NETAVARK-HOSTPORT-DNAT';
export const HOSTPORT_MASQ = 'NETAVARK-HOSTPORT-MASQ';
export const HOSTPORT_SETMARK = 'NETAVARK-HOSTPORT-SETMARK';

/** netavark's per-network chain suffix. */
export function networkHash(name: string): string {
  return digestHex('sha512', name).toUpperCase().slice(0, 13);
}

export const natChain = (name: string) => `NETAVARK-${networkHash(name)}`;
export const dnChain = (name: string) => `NETAVARK-DN-${networkHash(name)}`;

const loopback = (f: Family) => (f === 4 ? '127.0.0.1/32' : '::1/128');
const host = (ip: string, f: Family) => `${ip}/${f === 4 ? 32 : 128}`;
const withPort = (ip: string, port: string, f: Family) => (f === 4 ? `${ip}:${port}` : `[${ip}]:${port}`);

/** The rules a network needs (shared chains' jumps included), without its containers' ports. */
export function networkRules(n: NetavarkFwNetwork, f: Family, dnsPort: number): Rule[] {
  const rules: Rule[] = [];
  for (const s of n.subnets) {
    rules.push({ table: 'nat', chain: 'POSTROUTING', spec: `-s ${s} -j ${natChain(n.name)}` });
    rules.push({ table: 'nat', chain: natChain(n.name), spec: `-d ${s} -j ACCEPT` });
    rules.push({ table: 'nat', chain: natChain(n.name), spec: `! -d ${f === 4 ? '224.0.0.0/4' : 'ff00::/8'} -j MASQUERADE` });
    rules.push({ table: 'filter', chain: FORWARD_CHAIN, spec: `-d ${s} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` });
    rules.push({ table: 'filter', chain: FORWARD_CHAIN, spec: `-s ${s} -j ACCEPT` });
  }
  if (n.isolate) {
    rules.push({ table: 'filter', chain: ISOLATION_1, spec: `-i ${n.bridge} ! -o ${n.bridge} -j ${ISOLATION_2}` });
    rules.push({ table: 'filter', chain: ISOLATION_2, spec: `-o ${n.bridge} -j DROP` });
  }
  if (dnsPort !== 53) {
    for (const g of n.gateways) rules.push({ table: 'nat', chain: HOSTPORT_DNAT, spec: `-d ${host(g, f)} -p udp -m udp --dport 53 -j DNAT --to-destination ${withPort(g, String(dnsPort), f)}` });
  }
  return rules;
}

/** The shared chains' jumps and rules, which stay when networks go. */
export function sharedRules(isolate: boolean): Rule[] {
  return [
    ...(isolate ? [{ table: 'filter' as const, chain: 'FORWARD', spec: `-j ${ISOLATION_1}`, first: true }] : []),
    { table: 'filter', chain: 'FORWARD', spec: `-m comment --comment "netavark firewall plugin rules" -j ${FORWARD_CHAIN}` },
    { table: 'nat', chain: 'PREROUTING', spec: `-m addrtype --dst-type LOCAL -j ${HOSTPORT_DNAT}` },
    { table: 'nat', chain: 'OUTPUT', spec: `-m addrtype --dst-type LOCAL -j ${HOSTPORT_DNAT}` },
    { table: 'nat', chain: 'POSTROUTING', spec: `-j ${HOSTPORT_MASQ}`, first: true },
    { table: 'nat', chain: HOSTPORT_MASQ, spec: '-m comment --comment "netavark portfw masq mark" -m mark --mark 0x2000/0x2000 -j MASQUERADE' },
    { table: 'nat', chain: HOSTPORT_SETMARK, spec: '-j MARK --set-xmark 0x2000/0x2000' },
  ];
}

/** One container's port rules on one network for family `f` (its address `ip` there). */
export function portRules(n: NetavarkFwNetwork, f: Family, containerId: string, ip: string, ports: NetavarkPort[]): Rule[] {
  const rules: Rule[] = [];
  const dn = dnChain(n.name);
  for (const p of ports) {
    if (p.host_ip && (p.host_ip.includes(':') ? 6 : 4) !== f) continue;
    const range = Math.max(1, p.range || 1);
    const dport = range > 1 ? `${p.host_port}:${p.host_port + range - 1}` : String(p.host_port);
    const proto = `-p ${p.protocol} -m ${p.protocol} --dport ${dport}`;
    const dst = p.host_ip ? `-d ${host(p.host_ip, f)} ` : '';
    const to = range > 1 ? withPort(ip, `${p.container_port}-${p.container_port + range - 1}/${p.host_port}`, f) : withPort(ip, String(p.container_port), f);
    for (const s of n.subnets) rules.push({ table: 'nat', chain: dn, spec: `-s ${s} ${dst}${proto} -j ${HOSTPORT_SETMARK}` });
    rules.push({ table: 'nat', chain: dn, spec: `-s ${loopback(f)} ${dst}${proto} -j ${HOSTPORT_SETMARK}` });
    rules.push({ table: 'nat', chain: dn, spec: `${dst}${proto} -j DNAT --to-destination ${to}` });
    rules.push({ table: 'nat', chain: HOSTPORT_DNAT, spec: `${proto} -m comment --comment "dnat name: ${n.name} id: ${containerId}" -j ${dn}` });
  }
  return rules;
}

/** The chains `rules` use that are not built in. */
export function chainsOf(rules: Rule[]): Array<{ table: Rule['table']; chain: string }> {
  const builtin = new Set(['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING']);
  const out = new Map<string, { table: Rule['table']; chain: string }>();
  for (const r of rules) {
    if (!builtin.has(r.chain)) out.set(`${r.table} ${r.chain}`, { table: r.table, chain: r.chain });
    const jump = / -j (NETAVARK\S*)$/.exec(` ${r.spec}`)?.[1];
    if (jump) out.set(`${r.table} ${jump}`, { table: r.table, chain: jump });
  }
  return [...out.values()];
}

/** The restore lines that add what is missing from a table (`chains`, `rules` as read). */
export function addLines(want: Rule[], table: Rule['table'], have: { chains: Set<string>; rules: string[] }): string[] {
  const lines: string[] = [];
  const present = new Set(have.rules);
  for (const c of chainsOf(want).filter((c) => c.table === table)) {
    if (!have.chains.has(c.chain)) lines.push(`:${c.chain} - [0:0]`);
  }
  for (const r of want.filter((x) => x.table === table)) {
    const line = `-A ${r.chain} ${r.spec}`;
    if (present.has(line)) continue;
    present.add(line);
    lines.push(r.first ? `-I ${r.chain} 1 ${r.spec}` : line);
  }
  return lines;
}

/** The restore lines that delete those of `rules` that are there. */
export function deleteLines(rules: Rule[], table: Rule['table'], have: { rules: string[] }): string[] {
  const present = new Set(have.rules);
  const out: string[] = [];
  for (const r of rules.filter((x) => x.table === table)) {
    const line = `-A ${r.chain} ${r.spec}`;
    if (!present.has(line)) continue;
    present.delete(line);
    out.push(`-D ${r.chain} ${r.spec}`);
  }
  return out;
}
