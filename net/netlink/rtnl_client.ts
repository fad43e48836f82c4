/**
 * NetlinkClient over rtnetlink: burrow's own codec (net/wire/rtnetlink.ts) on a NETLINK_ROUTE
 * socket from the native addon, one synchronous request at a time (netlinkRequest: rtnetlink
 * answers within the send).
 *
 * The socket is created by a native thread inside the target netns (socketInNetns), so it keeps
 * working on that namespace while the main thread never leaves its own. A plugin's cold start
 * loads nothing else for netlink: the `netlink` npm package it replaces cost ~40 ms per exec
 * (its generated structs, and its own native binding).
 */
import fs from 'node:fs';
import os from 'node:os';
import { netlinkRequest, socketInNetns } from '../../native/mod.js';
import { formatIp, ipFromBuffer, ipToBuffer, parseCidr, parseIp, lastOf, type Family } from '../ip/addr.js';
import * as w from '../wire/rtnetlink.js';
import {
  NetlinkError, formatMac, parseMac,
  type AddressInfo, type IpvlanMode, type LinkInfo, type MacvlanMode, type NetlinkClient, type NewLinkOptions,
  type RouteInfo, type RouteSpec, type VethOptions,
} from './client.js';

const CREATE_EXCL = w.NLM_F_CREATE | w.NLM_F_EXCL;
const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const RT_TABLE_COMPAT = 252;
const RTN_UNICAST = 1;
const RTPROT_BOOT = 3;
const RTPROT_STATIC = 4;
const IFLA_BR_VLAN_FILTERING = 7; // include/uapi/linux/if_link.h
const AF_BRIDGE = 7;
const IFLA_BRPORT_MODE = 4; // hairpin
const IFLA_BRPORT_ISOLATED = 33;
const IFLA_BRIDGE_FLAGS = 0; // include/uapi/linux/if_bridge.h
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_FLAGS_SELF = 2;
const BRIDGE_VLAN_INFO_PVID = 2;
const BRIDGE_VLAN_INFO_UNTAGGED = 4;
const BRIDGE_VLAN_INFO_RANGE_BEGIN = 8;
const BRIDGE_VLAN_INFO_RANGE_END = 16;
// IFA_F_* (include/uapi/linux/if_addr.h)
const IFA_F_NODAD = 0x02;
const IFA_F_DADFAILED = 0x08;
const IFA_F_TENTATIVE = 0x40;
const IFA_F_PERMANENT = 0x80;
const OPER_STATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];
const MACVLAN_MODES: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 };
const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
const SCOPES: Record<RouteInfo['scope'], number> = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
const ROUTE_TYPES = ['other', 'unicast', 'local', 'broadcast', 'other', 'multicast', 'blackhole', 'unreachable', 'prohibit'];

function familyNumber(f: Family): number {
  return f === 4 ? AF_INET : AF_INET6;
}

/** Opens a netns path for IFLA_NET_NS_FD, runs `fn`, and always closes it. */
async function withNsFd<T>(nsPath: string | undefined, fn: (fd: number | undefined) => Promise<T>): Promise<T> {
  if (!nsPath) return fn(undefined);
  const fd = fs.openSync(nsPath, 'r');
  try {
    return await fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The errno name of `errno` ("EEXIST"), or "E<n>" for one Node does not name. */
export function errnoName(errno: number): string {
  const errnos = os.constants.errno as Record<string, number>;
  return Object.keys(errnos).find((k) => errnos[k] === errno) ?? `E${errno}`;
}

/** Real rtnetlink client for one namespace. Call close() when done. */
export class RtnlClient implements NetlinkClient {
  readonly netns: string;
  private readonly fd: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);

  /** `netns` is a path (/run/netns/x, /proc/PID/ns/net) or "" for the caller's own. */
  constructor(netns = '') {
    this.netns = netns;
    this.fd = socketInNetns(netns, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /**
   * One request; returns the reply messages (an ack has none). A kernel errno becomes a
   * NetlinkError naming the action; with `absent`, one of those errnos resolves to null instead.
   */
  private request(action: string, type: number, flags: number, body: Buffer, absent: string[] = []): w.NlMessage[] | null {
    const dump = (flags & w.NLM_F_DUMP) === w.NLM_F_DUMP;
    const seq = (this.seq = (this.seq + 1) >>> 0);
    let raw: Buffer;
    try {
      raw = netlinkRequest(this.fd, w.emitMessage(type, flags | w.NLM_F_REQUEST | (dump ? 0 : w.NLM_F_ACK), seq, body));
    } catch (err) {
      throw this.typed(action, (err as { errno?: number }).errno ? Math.abs((err as { errno: number }).errno) : os.constants.errno.EIO, err);
    }
    const msgs = w.parseMessages(raw);
    if (typeof msgs === 'string') throw this.typed(action, os.constants.errno.EIO, new Error(`malformed netlink reply (${msgs})`));
    const out: w.NlMessage[] = [];
    for (const m of msgs) {
      if (m.type === w.NLMSG_ERROR || m.type === w.NLMSG_DONE) {
        const errno = m.type === w.NLMSG_ERROR ? w.errorOf(m.body) : m.body.length >= 4 ? -m.body.readInt32LE(0) : 0;
        if (errno) {
          if (absent.includes(errnoName(errno))) return null;
          throw this.typed(action, errno);
        }
        continue;
      }
      out.push(m);
    }
    return out;
  }

  private typed(action: string, errno: number, cause?: unknown): NetlinkError {
    const code = errnoName(errno);
    const where = this.netns ? ` in netns "${this.netns}"` : '';
    return new NetlinkError(code, errno, `cannot ${action}${where}: ${code}`, this.netns, cause ? { cause } : undefined);
  }

  private async indexOf(name: string): Promise<number> {
    const link = await this.getLink(name);
    if (!link) {
      const where = this.netns ? ` in netns "${this.netns}"` : '';
      throw new NetlinkError('ENODEV', os.constants.errno.ENODEV, `link "${name}" not found${where}`, this.netns);
    }
    return link.index;
  }

  private toLinkInfo(body: Buffer): LinkInfo | null {
    const m = w.parseLinkMessage(body);
    if (typeof m === 'string') return null;
    const a = m.attrs;
    const li = a.get(w.IFLA_LINKINFO);
    const info = li ? w.parseAttrs(li) : undefined;
    const kind = info && typeof info !== 'string' ? w.attrStr(info.get(w.IFLA_INFO_KIND)) : undefined;
    const data = info && typeof info !== 'string' ? info.get(w.IFLA_INFO_DATA) : undefined;
    const dataAttrs = data ? w.parseAttrs(data) : undefined;
    let mode: string | undefined;
    if (dataAttrs && typeof dataAttrs !== 'string') {
      if (kind === 'macvlan') {
        const raw = w.attrU32(dataAttrs.get(w.IFLA_MACVLAN_MODE)) ?? 0;
        mode = (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === raw);
      } else if (kind === 'ipvlan') {
        const raw = w.attrU16(dataAttrs.get(w.IFLA_IPVLAN_MODE)) ?? 0;
        mode = (Object.keys(IPVLAN_MODES) as IpvlanMode[]).find((k) => IPVLAN_MODES[k] === raw);
      }
    }
    const address = a.get(w.IFLA_ADDRESS);
    return {
      index: m.index,
      name: w.attrStr(a.get(w.IFLA_IFNAME)) ?? '',
      kind: kind ?? (m.flags & w.IFF_LOOPBACK ? 'loopback' : ''),
      mtu: w.attrU32(a.get(w.IFLA_MTU)) ?? 0,
      mac: formatMac(address ? Buffer.from(address) : undefined),
      up: !!(m.flags & w.IFF_UP),
      operState: OPER_STATES[w.attrU8(a.get(w.IFLA_OPERSTATE)) ?? 0] ?? 'unknown',
      master: w.attrU32(a.get(w.IFLA_MASTER)) || undefined,
      parentIndex: w.attrU32(a.get(w.IFLA_LINK)),
      linkNetnsId: w.attrI32(a.get(w.IFLA_LINK_NETNSID)),
      promisc: !!(m.flags & w.IFF_PROMISC),
      allmulti: !!(m.flags & w.IFF_ALLMULTI),
      mode,
    };
  }

  private links(msgs: w.NlMessage[] | null): LinkInfo[] {
    return (msgs ?? []).map((m) => this.toLinkInfo(m.body)).filter((l): l is LinkInfo => l !== null);
  }

  async listLinks(): Promise<LinkInfo[]> {
    return this.links(this.request('list links', w.RTM_GETLINK, w.NLM_F_DUMP, w.emitIfinfo({})));
  }

  async getLink(name: string): Promise<LinkInfo | null> {
    return this.links(this.request(`get link "${name}"`, w.RTM_GETLINK, 0, w.emitIfinfo({}, [w.nlaStr(w.IFLA_IFNAME, name)]), ['ENODEV']))[0] ?? null;
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | null> {
    return this.links(this.request(`get link #${index}`, w.RTM_GETLINK, 0, w.emitIfinfo({ index }), ['ENODEV']))[0] ?? null;
  }

  private linkAttrs(name: string, opts: NewLinkOptions, netNsFd: number | undefined): Buffer[] {
    const attrs = [w.nlaStr(w.IFLA_IFNAME, name)];
    if (opts.mtu) attrs.push(w.nlaU32(w.IFLA_MTU, opts.mtu));
    if (opts.mac) attrs.push(w.nla(w.IFLA_ADDRESS, parseMac(opts.mac)));
    if (opts.txqlen !== undefined) attrs.push(w.nlaU32(w.IFLA_TXQLEN, opts.txqlen));
    if (netNsFd !== undefined) attrs.push(w.nlaU32(w.IFLA_NET_NS_FD, netNsFd));
    return attrs;
  }

  /** IFLA_LINKINFO: the kind, and its IFLA_INFO_DATA when given. */
  private linkInfo(kind: string, data?: Buffer[]): Buffer {
    return w.nla(w.IFLA_LINKINFO, Buffer.concat([w.nlaStr(w.IFLA_INFO_KIND, kind), ...(data ? [w.nla(w.IFLA_INFO_DATA, Buffer.concat(data))] : [])]));
  }

  private newLink(action: string, attrs: Buffer[]): void {
    this.request(action, w.RTM_NEWLINK, CREATE_EXCL, w.emitIfinfo({}, attrs));
  }

  async addVeth(name: string, peerName: string, opts: VethOptions = {}): Promise<void> {
    await withNsFd(opts.netns, (fd) =>
      withNsFd(opts.peerNetns, async (peerFd) => {
        const peer = w.emitIfinfo({}, this.linkAttrs(peerName, { mtu: opts.peerMtu ?? opts.mtu, mac: opts.peerMac }, peerFd));
        this.newLink(`add veth pair "${name}"/"${peerName}"`, [...this.linkAttrs(name, opts, fd), this.linkInfo('veth', [w.nla(w.VETH_INFO_PEER, peer)])]);
      }));
  }

  async addBridge(name: string, opts: NewLinkOptions & { vlanFiltering?: boolean } = {}): Promise<void> {
    const data = opts.vlanFiltering ? [w.nlaU8(IFLA_BR_VLAN_FILTERING, 1)] : undefined;
    await withNsFd(opts.netns, async (fd) => this.newLink(`add bridge "${name}"`, [...this.linkAttrs(name, opts, fd), this.linkInfo('bridge', data)]));
  }

  async addMacvlan(name: string, parent: string, mode: MacvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const parentIndex = await this.indexOf(parent);
    await withNsFd(opts.netns, async (fd) => this.newLink(`add macvlan "${name}" on "${parent}"`, [
      ...this.linkAttrs(name, opts, fd), w.nlaU32(w.IFLA_LINK, parentIndex), this.linkInfo('macvlan', [w.nlaU32(w.IFLA_MACVLAN_MODE, MACVLAN_MODES[mode])]),
    ]));
  }

  async addIpvlan(name: string, parent: string, mode: IpvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const parentIndex = await this.indexOf(parent);
    await withNsFd(opts.netns, async (fd) => this.newLink(`add ipvlan "${name}" on "${parent}"`, [
      ...this.linkAttrs(name, opts, fd), w.nlaU32(w.IFLA_LINK, parentIndex), this.linkInfo('ipvlan', [w.nlaU16(w.IFLA_IPVLAN_MODE, IPVLAN_MODES[mode])]),
    ]));
  }

  async removeLink(name: string): Promise<boolean> {
    return this.request(`remove link "${name}"`, w.RTM_DELLINK, 0, w.emitIfinfo({}, [w.nlaStr(w.IFLA_IFNAME, name)]), ['ENODEV']) !== null;
  }

  private async setLink(name: string, action: string, info: w.IfInfo, attrs: Buffer[] = []): Promise<void> {
    const index = await this.indexOf(name);
    this.request(`${action} on "${name}"`, w.RTM_SETLINK, 0, w.emitIfinfo({ ...info, index }, attrs));
  }

  async setUp(name: string, up: boolean): Promise<void> {
    await this.setLink(name, up ? 'set link up' : 'set link down', { flags: up ? w.IFF_UP : 0, change: w.IFF_UP });
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const masterIndex = master === null ? 0 : await this.indexOf(master);
    await this.setLink(name, master === null ? 'release from master' : `enslave to "${master}"`, {}, [w.nlaU32(w.IFLA_MASTER, masterIndex)]);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    await this.setLink(name, `set MTU ${mtu}`, {}, [w.nlaU32(w.IFLA_MTU, mtu)]);
  }

  async setMac(name: string, mac: string): Promise<void> {
    await this.setLink(name, `set MAC ${mac}`, {}, [w.nla(w.IFLA_ADDRESS, parseMac(mac))]);
  }

  async setPromisc(name: string, on: boolean): Promise<void> {
    await this.setLink(name, on ? 'set promisc on' : 'set promisc off', { flags: on ? w.IFF_PROMISC : 0, change: w.IFF_PROMISC });
  }

  async setAllmulti(name: string, on: boolean): Promise<void> {
    await this.setLink(name, on ? 'set allmulticast on' : 'set allmulticast off', { flags: on ? w.IFF_ALLMULTI : 0, change: w.IFF_ALLMULTI });
  }

  async rename(name: string, newName: string): Promise<void> {
    await this.setLink(name, `rename to "${newName}"`, {}, [w.nlaStr(w.IFLA_IFNAME, newName)]);
  }

  async moveToNetns(name: string, netnsPath: string, newName?: string): Promise<void> {
    await withNsFd(netnsPath, (fd) => this.setLink(name, `move to netns "${netnsPath}"`, {}, [w.nlaU32(w.IFLA_NET_NS_FD, fd!), ...(newName ? [w.nlaStr(w.IFLA_IFNAME, newName)] : [])]));
  }

  /** An AF_BRIDGE link message: bridge port flags and VLANs. */
  private bridgeRequest(type: number, index: number, attr: Buffer, action: string): void {
    this.request(action, type, 0, w.emitIfinfo({ family: AF_BRIDGE, index }, [attr]));
  }

  async setBridgePort(name: string, opts: { hairpin?: boolean; isolated?: boolean }): Promise<void> {
    const index = await this.indexOf(name);
    const parts: Buffer[] = [];
    if (opts.hairpin !== undefined) parts.push(w.nlaU8(IFLA_BRPORT_MODE, opts.hairpin ? 1 : 0));
    if (opts.isolated !== undefined) parts.push(w.nlaU8(IFLA_BRPORT_ISOLATED, opts.isolated ? 1 : 0));
    if (!parts.length) return;
    this.bridgeRequest(w.RTM_SETLINK, index, w.nlaNested(w.IFLA_PROTINFO, parts), `set bridge port flags on "${name}"`);
  }

  private vlanSpec(vid: number, opts: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean }): Buffer {
    const info = (flags: number, v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt16LE(flags, 0);
      b.writeUInt16LE(v, 2);
      return w.nla(IFLA_BRIDGE_VLAN_INFO, b);
    };
    const base = (opts.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (opts.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0);
    const parts: Buffer[] = [];
    if (opts.self) parts.push(w.nlaU16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF));
    if (opts.vidEnd && opts.vidEnd > vid) {
      parts.push(info(base | BRIDGE_VLAN_INFO_RANGE_BEGIN, vid), info(base | BRIDGE_VLAN_INFO_RANGE_END, opts.vidEnd));
    } else {
      parts.push(info(base, vid));
    }
    return w.nlaNested(w.IFLA_AF_SPEC, parts);
  }

  async bridgeVlanAdd(name: string, vid: number, opts: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean } = {}): Promise<void> {
    const index = await this.indexOf(name);
    const what = opts.vidEnd ? `${vid}-${opts.vidEnd}` : `${vid}`;
    this.bridgeRequest(w.RTM_SETLINK, index, this.vlanSpec(vid, opts), `add VLAN ${what} to "${name}"`);
  }

  async bridgeVlanDel(name: string, vid: number, opts: { self?: boolean } = {}): Promise<boolean> {
    const link = await this.getLink(name);
    if (!link) return false;
    try {
      this.bridgeRequest(w.RTM_DELLINK, link.index, this.vlanSpec(vid, opts), `remove VLAN ${vid} from "${name}"`);
      return true;
    } catch (err) {
      if ((err as NetlinkError).code === 'ENOENT' || (err as NetlinkError).code === 'EINVAL') return false;
      throw err;
    }
  }

  async listAddresses(name?: string): Promise<AddressInfo[]> {
    const links = await this.listLinks();
    const names = new Map(links.map((l) => [l.index, l.name]));
    const wanted = name === undefined ? undefined : links.find((l) => l.name === name)?.index;
    if (name !== undefined && wanted === undefined) return [];
    const msgs = this.request('list addresses', w.RTM_GETADDR, w.NLM_F_DUMP, w.emitIfaddr({ family: 0, prefixLen: 0, flags: 0, scope: 0, index: 0 })) ?? [];
    const out: AddressInfo[] = [];
    for (const raw of msgs) {
      const m = w.parseAddrMessage(raw.body);
      if (typeof m === 'string') continue;
      if (wanted !== undefined && m.index !== wanted) continue;
      const bytes = m.attrs.get(w.IFA_LOCAL) ?? m.attrs.get(w.IFA_ADDRESS);
      if (!bytes || (bytes.length !== 4 && bytes.length !== 16)) continue;
      const flags = w.attrU32(m.attrs.get(w.IFA_FLAGS)) ?? m.flags;
      out.push({
        index: m.index,
        ifname: names.get(m.index) ?? '',
        family: bytes.length === 4 ? 4 : 6,
        cidr: `${formatIp(ipFromBuffer(Buffer.from(bytes)))}/${m.prefixLen}`,
        scope: m.scope,
        flags: { nodad: !!(flags & IFA_F_NODAD), tentative: !!(flags & IFA_F_TENTATIVE), dadfailed: !!(flags & IFA_F_DADFAILED), permanent: !!(flags & IFA_F_PERMANENT) },
      });
    }
    return out;
  }

  async addAddress(name: string, cidr: string, opts: { noDad?: boolean } = {}): Promise<void> {
    const c = parseCidr(cidr);
    const index = await this.indexOf(name);
    const bytes = ipToBuffer(c.ip);
    const attrs: Buffer[] = [];
    if (c.ip.family === 4) attrs.push(w.nla(w.IFA_LOCAL, bytes));
    attrs.push(w.nla(w.IFA_ADDRESS, bytes));
    // As iproute2's "brd +" and Go's netlink.AddrAdd do for prefixes that have one.
    if (c.ip.family === 4 && c.prefixLen < 31) attrs.push(w.nla(w.IFA_BROADCAST, ipToBuffer(lastOf(c))));
    const flags = opts.noDad ? IFA_F_NODAD : 0;
    if (flags) attrs.push(w.nlaU32(w.IFA_FLAGS, flags));
    this.request(`add address "${cidr}" to "${name}"`, w.RTM_NEWADDR, CREATE_EXCL, w.emitIfaddr({ family: familyNumber(c.ip.family), prefixLen: c.prefixLen, flags, scope: 0, index }, attrs));
  }

  async removeAddress(name: string, cidr: string): Promise<boolean> {
    const c = parseCidr(cidr);
    const link = await this.getLink(name);
    if (!link) return false;
    const bytes = ipToBuffer(c.ip);
    const attrs = c.ip.family === 4 ? [w.nla(w.IFA_LOCAL, bytes), w.nla(w.IFA_ADDRESS, bytes)] : [w.nla(w.IFA_ADDRESS, bytes)];
    const body = w.emitIfaddr({ family: familyNumber(c.ip.family), prefixLen: c.prefixLen, flags: 0, scope: 0, index: link.index }, attrs);
    return this.request(`remove address "${cidr}" from "${name}"`, w.RTM_DELADDR, 0, body, ['EADDRNOTAVAIL', 'ENOENT', 'ESRCH']) !== null;
  }

  async listRoutes(family?: 4 | 6, table = RT_TABLE_MAIN): Promise<RouteInfo[]> {
    const links = await this.listLinks();
    const names = new Map(links.map((l) => [l.index, l.name]));
    const req = w.emitRtmsg({ family: family ? familyNumber(family) : 0, dstLen: 0, table: 0, protocol: 0, scope: 0, type: 0 });
    const msgs = this.request('list routes', w.RTM_GETROUTE, w.NLM_F_DUMP, req) ?? [];
    const out: RouteInfo[] = [];
    for (const raw of msgs) {
      const m = w.parseRouteMessage(raw.body);
      if (typeof m === 'string' || (m.family !== AF_INET && m.family !== AF_INET6)) continue;
      const tbl = w.attrU32(m.attrs.get(w.RTA_TABLE)) ?? m.table;
      if (table !== 0 && tbl !== table) continue;
      const dstBytes = m.attrs.get(w.RTA_DST);
      const gw = m.attrs.get(w.RTA_GATEWAY);
      const oif = w.attrU32(m.attrs.get(w.RTA_OIF));
      out.push({
        family: m.family === AF_INET6 ? 6 : 4,
        dst: m.dstLen && dstBytes ? `${formatIp(ipFromBuffer(Buffer.from(dstBytes)))}/${m.dstLen}` : 'default',
        gateway: gw ? formatIp(ipFromBuffer(Buffer.from(gw))) : undefined,
        dev: oif ? names.get(oif) : undefined,
        table: tbl,
        priority: w.attrU32(m.attrs.get(w.RTA_PRIORITY)),
        scope: ((Object.keys(SCOPES) as RouteInfo['scope'][]).find((k) => SCOPES[k] === m.scope)) ?? 'universe',
        protocol: m.protocol,
        type: (ROUTE_TYPES[m.type] ?? 'other') as RouteInfo['type'],
      });
    }
    return out;
  }

  private async routeMsg(r: RouteSpec, del = false): Promise<Buffer> {
    let family: Family;
    const attrs: Buffer[] = [];
    let dstLen = 0;
    if (r.dst === 'default') {
      family = r.family ?? (r.gateway ? parseIp(r.gateway).family : 4);
    } else {
      const c = parseCidr(r.dst);
      family = c.ip.family;
      dstLen = c.prefixLen;
      attrs.push(w.nla(w.RTA_DST, ipToBuffer(c.ip)));
    }
    if (r.gateway) attrs.push(w.nla(w.RTA_GATEWAY, ipToBuffer(parseIp(r.gateway))));
    if (r.dev) attrs.push(w.nlaU32(w.RTA_OIF, await this.indexOf(r.dev)));
    if (r.priority !== undefined) attrs.push(w.nlaU32(w.RTA_PRIORITY, r.priority));
    const table = r.table ?? RT_TABLE_MAIN;
    if (table > 255) attrs.push(w.nlaU32(w.RTA_TABLE, table));
    if (r.mtu || r.advmss) {
      const metrics: Buffer[] = [];
      if (r.mtu) metrics.push(w.nlaU32(w.RTAX_MTU, r.mtu));
      if (r.advmss) metrics.push(w.nlaU32(w.RTAX_ADVMSS, r.advmss));
      attrs.push(w.nla(w.RTA_METRICS, Buffer.concat(metrics)));
    }
    const scope = r.scope ?? (r.gateway || !r.dev ? 'universe' : 'link');
    // a delete matches any protocol, and any scope through RT_SCOPE_NOWHERE (as iproute2's "ip route del")
    return w.emitRtmsg({
      family: familyNumber(family), dstLen, table: table > 255 ? RT_TABLE_COMPAT : table,
      protocol: del ? 0 : r.protocol === 'static' ? RTPROT_STATIC : RTPROT_BOOT, scope: del ? SCOPES.nowhere : SCOPES[scope], type: RTN_UNICAST,
    }, attrs);
  }

  async addRoute(route: RouteSpec): Promise<void> {
    const body = await this.routeMsg(route);
    this.request(`add route ${describeRoute(route)}`, w.RTM_NEWROUTE, CREATE_EXCL, body);
  }

  async replaceRoute(route: RouteSpec): Promise<void> {
    const body = await this.routeMsg(route);
    this.request(`replace route ${describeRoute(route)}`, w.RTM_NEWROUTE, w.NLM_F_CREATE | w.NLM_F_REPLACE, body);
  }

  async removeRoute(route: RouteSpec): Promise<boolean> {
    let body: Buffer;
    try {
      body = await this.routeMsg(route, true);
    } catch (err) {
      if ((err as NetlinkError).code === 'ENODEV') return false;
      throw err;
    }
    return this.request(`remove route ${describeRoute(route)}`, w.RTM_DELROUTE, 0, body, ['ESRCH', 'ENOENT']) !== null;
  }
}

function describeRoute(r: RouteSpec): string {
  return `"${r.dst}"${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev "${r.dev}"` : ''}`;
}
