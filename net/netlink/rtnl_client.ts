/**
 * NetlinkClient over rtnetlink, using the `netlink` package (pinned 0.3.0).
 *
 * The socket is created while the main thread sits inside the target netns
 * (withNetnsSync); the package creates and binds it synchronously in its
 * constructor, so the socket keeps working on that namespace afterwards.
 * Only the rt modules are imported, not the package index (nl80211, wg, ...),
 * which keeps start-up about 35 ms shorter.
 */
import fs from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import type { RtNetlinkSocket } from 'netlink/dist/rt/rt.js';
import type * as ifla from 'netlink/dist/rt/ifla.js';
import type * as rtStructs from 'netlink/dist/rt/gen_structs.js';
import type { StreamData } from 'netlink/dist/structs.js';
import type * as StructsModule from 'netlink/dist/structs.js';
import type * as RtModule from 'netlink/dist/rt/rt.js';
import { withNetnsSync } from '../../native/mod.js';
import { formatIp, ipFromBuffer, ipToBuffer, parseCidr, parseIp, lastOf, type Family } from '../ip/addr.js';
import {
  NetlinkError, formatMac, parseMac,
  type AddressInfo, type IpvlanMode, type LinkInfo, type MacvlanMode, type NetlinkClient, type NewLinkOptions,
  type RouteInfo, type RouteSpec, type VethOptions,
} from './client.js';

// NLM_F_* (include/uapi/linux/netlink.h)
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const CREATE_EXCL = NLM_F_CREATE | NLM_F_EXCL;

interface NetlinkModules {
  rt: typeof RtModule;
  ifla: typeof ifla;
  gen: typeof rtStructs;
  structs: typeof StructsModule;
}

let modules: NetlinkModules | undefined;

/**
 * The `netlink` package, loaded on first use: its generated structs cost ~15 ms to load,
 * which commands that never touch a link (VERSION, --help, network ls) should not pay.
 */
function nl(): NetlinkModules {
  if (!modules) {
    const req = createRequire(import.meta.url);
    modules = {
      rt: req('netlink/dist/rt/rt.js') as typeof RtModule,
      ifla: req('netlink/dist/rt/ifla.js') as typeof ifla,
      gen: req('netlink/dist/rt/gen_structs.js') as typeof rtStructs,
      structs: req('netlink/dist/structs.js') as typeof StructsModule,
    };
  }
  return modules;
}
const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const IFLA_BR_VLAN_FILTERING = 7; // include/uapi/linux/if_link.h
const AF_BRIDGE = 7;
const NLA_F_NESTED = 0x8000;
const IFLA_PROTINFO = 12;
const IFLA_AF_SPEC = 26;
const IFLA_BRPORT_MODE = 4; // hairpin
const IFLA_BRPORT_ISOLATED = 33;
const IFLA_BRIDGE_FLAGS = 0; // include/uapi/linux/if_bridge.h
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_FLAGS_SELF = 2;
const BRIDGE_VLAN_INFO_PVID = 2;
const BRIDGE_VLAN_INFO_UNTAGGED = 4;
const BRIDGE_VLAN_INFO_RANGE_BEGIN = 8;
const BRIDGE_VLAN_INFO_RANGE_END = 16;
const RTM_DELLINK = 17;
const RTM_SETLINK = 19;
const OPER_STATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];
const MACVLAN_MODES: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 };
const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
const SCOPES: Record<RouteInfo['scope'], number> = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };

function toBuf(d: StreamData): Buffer {
  const s = new (nl().structs.AttrStream)();
  s.emit(d);
  return Buffer.concat(s.bufs);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** One raw netlink attribute (len, type, payload, padded to 4). */
function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

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

/** Real rtnetlink client for one namespace. Call close() when done. */
/**
 * The kernel's errno behind a failed `netlink` package request. The package reports a kernel
 * NLMSG_ERROR only as Error("Request rejected: <errno name>") (netlink.js checkError): this is
 * the one place that reads that text, so every caller works on typed codes. Anything else (a
 * socket failure, a bug) is EIO.
 */
export function kernelErrno(err: unknown): { code: string; errno: number } {
  const m = /^Request rejected: (E[A-Z0-9]+|\d+)$/.exec(String((err as Error)?.message ?? ''));
  const errnos = os.constants.errno as Record<string, number>;
  if (!m) return { code: 'EIO', errno: errnos.EIO };
  if (/^\d+$/.test(m[1])) {
    const n = Number(m[1]);
    return { code: Object.keys(errnos).find((k) => errnos[k] === n) ?? `E${n}`, errno: n };
  }
  return { code: m[1], errno: errnos[m[1]] ?? 0 };
}

export class RtnlClient implements NetlinkClient {
  readonly netns: string;
  private readonly sock: RtNetlinkSocket;

  /** `netns` is a path (/run/netns/x, /proc/PID/ns/net) or "" for the caller's own. */
  constructor(netns = '') {
    this.netns = netns;
    const { createRtNetlink } = nl().rt;
    this.sock = netns ? withNetnsSync(netns, () => createRtNetlink()) : createRtNetlink();
  }

  close(): void {
    this.sock.socket.socket.close();
  }

  /** Runs a request; a kernel error becomes a NetlinkError with its errno, naming the action. */
  private async req<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.typed(action, err);
    }
  }

  /** Like {@link req}, but resolves to null when the kernel answers with one of `absent` (already gone). */
  private async reqOrAbsent<T>(action: string, fn: () => Promise<T>, absent: string[]): Promise<T | null> {
    try {
      return await fn();
    } catch (err) {
      const e = this.typed(action, err);
      if (absent.includes(e.code)) return null;
      throw e;
    }
  }

  private typed(action: string, err: unknown): NetlinkError {
    if (err instanceof NetlinkError) return err;
    const { code, errno } = kernelErrno(err);
    const where = this.netns ? ` in netns "${this.netns}"` : '';
    return new NetlinkError(code, errno, `cannot ${action}${where}: ${code}`, this.netns, { cause: err });
  }

  private async indexOf(name: string): Promise<number> {
    const link = await this.getLink(name);
    if (!link) {
      const where = this.netns ? ` in netns "${this.netns}"` : '';
      throw new NetlinkError('ENODEV', os.constants.errno.ENODEV, `link "${name}" not found${where}`, this.netns);
    }
    return link.index;
  }

  private toLinkInfo(m: { data: rtStructs.Link; attrs: ifla.LinkAttrs }): LinkInfo {
    const info = m.attrs.linkinfo ? nl().ifla.parseInfo(m.attrs.linkinfo) : {};
    let mode: string | undefined;
    if (info.kind === 'macvlan' && info.data) {
      const raw = nl().ifla.parseMacvlan(info.data).mode ?? 0;
      mode = (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === raw);
    } else if (info.kind === 'ipvlan' && info.data) {
      const raw = nl().ifla.parseIpvlan(info.data).mode ?? 0;
      mode = (Object.keys(IPVLAN_MODES) as IpvlanMode[]).find((k) => IPVLAN_MODES[k] === raw);
    }
    const flags = m.data.flags ?? {};
    return {
      index: m.data.index ?? 0,
      name: m.attrs.ifname ?? '',
      kind: info.kind ?? (flags.loopback ? 'loopback' : ''),
      mtu: m.attrs.mtu ?? 0,
      mac: formatMac(m.attrs.address),
      up: !!flags.up,
      operState: OPER_STATES[m.attrs.operstate ?? 0] ?? 'unknown',
      master: m.attrs.master || undefined,
      parentIndex: m.attrs.link ? m.attrs.link.readUInt32LE(0) : undefined,
      linkNetnsId: m.attrs.linkNetnsid,
      promisc: !!flags.promisc,
      allmulti: !!flags.allmulti,
      mode,
    };
  }

  async listLinks(): Promise<LinkInfo[]> {
    const msgs = await this.req('list links', () => this.sock.getLinks());
    return msgs.map((m) => this.toLinkInfo(m));
  }

  async getLink(name: string): Promise<LinkInfo | null> {
    const msgs = await this.reqOrAbsent(`get link "${name}"`, () => this.sock.getLink({}, { ifname: name }), ['ENODEV']);
    return msgs?.length ? this.toLinkInfo(msgs[0]) : null;
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | null> {
    const msgs = await this.reqOrAbsent(`get link #${index}`, () => this.sock.getLink({ index }), ['ENODEV']);
    return msgs?.length ? this.toLinkInfo(msgs[0]) : null;
  }

  private linkAttrs(name: string, opts: NewLinkOptions, netNsFd: number | undefined): ifla.LinkAttrs {
    const attrs: ifla.LinkAttrs = { ifname: name };
    if (opts.mtu) attrs.mtu = opts.mtu;
    if (opts.mac) attrs.address = parseMac(opts.mac);
    if (opts.txqlen !== undefined) attrs.txqlen = opts.txqlen;
    if (netNsFd !== undefined) attrs.netNsFd = netNsFd;
    return attrs;
  }

  async addVeth(name: string, peerName: string, opts: VethOptions = {}): Promise<void> {
    await withNsFd(opts.netns, (fd) =>
      withNsFd(opts.peerNetns, async (peerFd) => {
        const peerAttrs = this.linkAttrs(peerName, { mtu: opts.peerMtu ?? opts.mtu, mac: opts.peerMac }, peerFd);
        const peer = Buffer.concat([nl().gen.formatLink({}), toBuf(nl().ifla.formatLinkAttrs(peerAttrs))]);
        const linkinfo = toBuf(nl().ifla.formatInfo({ kind: 'veth', data: toBuf(nl().ifla.formatVethInfo({ peer })) }));
        await this.req(`add veth pair "${name}"/"${peerName}"`, () =>
          this.sock.newLink({}, { ...this.linkAttrs(name, opts, fd), linkinfo }, { flags: CREATE_EXCL }));
      }));
  }

  async addBridge(name: string, opts: NewLinkOptions & { vlanFiltering?: boolean } = {}): Promise<void> {
    const data = opts.vlanFiltering ? nla(IFLA_BR_VLAN_FILTERING, Buffer.from([1])) : undefined;
    const linkinfo = toBuf(nl().ifla.formatInfo({ kind: 'bridge', data }));
    await withNsFd(opts.netns, (fd) =>
      this.req(`add bridge "${name}"`, () => this.sock.newLink({}, { ...this.linkAttrs(name, opts, fd), linkinfo }, { flags: CREATE_EXCL })));
  }

  async addMacvlan(name: string, parent: string, mode: MacvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const parentIndex = await this.indexOf(parent);
    const data = toBuf(nl().ifla.formatMacvlan({ mode: MACVLAN_MODES[mode] }));
    const linkinfo = toBuf(nl().ifla.formatInfo({ kind: 'macvlan', data }));
    await withNsFd(opts.netns, (fd) =>
      this.req(`add macvlan "${name}" on "${parent}"`, () =>
        this.sock.newLink({}, { ...this.linkAttrs(name, opts, fd), link: u32(parentIndex), linkinfo }, { flags: CREATE_EXCL })));
  }

  async addIpvlan(name: string, parent: string, mode: IpvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const parentIndex = await this.indexOf(parent);
    const data = toBuf(nl().ifla.formatIpvlan({ mode: IPVLAN_MODES[mode] }));
    const linkinfo = toBuf(nl().ifla.formatInfo({ kind: 'ipvlan', data }));
    await withNsFd(opts.netns, (fd) =>
      this.req(`add ipvlan "${name}" on "${parent}"`, () =>
        this.sock.newLink({}, { ...this.linkAttrs(name, opts, fd), link: u32(parentIndex), linkinfo }, { flags: CREATE_EXCL })));
  }

  async removeLink(name: string): Promise<boolean> {
    return (await this.reqOrAbsent(`remove link "${name}"`, async () => (await this.sock.delLink({}, { ifname: name }), true), ['ENODEV'])) ?? false;
  }

  private async setLink(name: string, action: string, data: rtStructs.Link, attrs: ifla.LinkAttrs = {}): Promise<void> {
    const index = await this.indexOf(name);
    await this.req(`${action} on "${name}"`, () => this.sock.setLink({ ...data, index }, attrs));
  }

  async setUp(name: string, up: boolean): Promise<void> {
    await this.setLink(name, up ? 'set link up' : 'set link down', { flags: up ? { up: true } : {}, change: { up: true } });
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const masterIndex = master === null ? 0 : await this.indexOf(master);
    await this.setLink(name, master === null ? 'release from master' : `enslave to "${master}"`, {}, { master: masterIndex });
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    await this.setLink(name, `set MTU ${mtu}`, {}, { mtu });
  }

  async setMac(name: string, mac: string): Promise<void> {
    await this.setLink(name, `set MAC ${mac}`, {}, { address: parseMac(mac) });
  }

  async setPromisc(name: string, on: boolean): Promise<void> {
    await this.setLink(name, on ? 'set promisc on' : 'set promisc off', { flags: on ? { promisc: true } : {}, change: { promisc: true } });
  }

  async setAllmulti(name: string, on: boolean): Promise<void> {
    await this.setLink(name, on ? 'set allmulticast on' : 'set allmulticast off', { flags: on ? { allmulti: true } : {}, change: { allmulti: true } });
  }

  async rename(name: string, newName: string): Promise<void> {
    await this.setLink(name, `rename to "${newName}"`, {}, { ifname: newName });
  }

  async moveToNetns(name: string, netnsPath: string, newName?: string): Promise<void> {
    await withNsFd(netnsPath, (fd) => {
      const attrs: ifla.LinkAttrs = { netNsFd: fd };
      if (newName) attrs.ifname = newName;
      return this.setLink(name, `move to netns "${netnsPath}"`, {}, attrs);
    });
  }

  /** Sends a raw AF_BRIDGE link message (the `netlink` package has no nested-flag control). */
  private async bridgeRequest(type: number, index: number, attr: Buffer, action: string): Promise<void> {
    const body = Buffer.concat([nl().gen.formatLink({ family: AF_BRIDGE, index }), attr]);
    await this.req(action, () => this.sock.request(type as rtStructs.MessageType, body));
  }

  async setBridgePort(name: string, opts: { hairpin?: boolean; isolated?: boolean }): Promise<void> {
    const index = await this.indexOf(name);
    const parts: Buffer[] = [];
    if (opts.hairpin !== undefined) parts.push(nla(IFLA_BRPORT_MODE, Buffer.from([opts.hairpin ? 1 : 0])));
    if (opts.isolated !== undefined) parts.push(nla(IFLA_BRPORT_ISOLATED, Buffer.from([opts.isolated ? 1 : 0])));
    if (!parts.length) return;
    await this.bridgeRequest(RTM_SETLINK, index, nla(IFLA_PROTINFO | NLA_F_NESTED, Buffer.concat(parts)), `set bridge port flags on "${name}"`);
  }

  private vlanSpec(vid: number, opts: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean }): Buffer {
    const info = (flags: number, v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt16LE(flags, 0);
      b.writeUInt16LE(v, 2);
      return nla(IFLA_BRIDGE_VLAN_INFO, b);
    };
    const base = (opts.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (opts.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0);
    const parts: Buffer[] = [];
    if (opts.self) {
      const f = Buffer.alloc(2);
      f.writeUInt16LE(BRIDGE_FLAGS_SELF);
      parts.push(nla(IFLA_BRIDGE_FLAGS, f));
    }
    if (opts.vidEnd && opts.vidEnd > vid) {
      parts.push(info(base | BRIDGE_VLAN_INFO_RANGE_BEGIN, vid), info(base | BRIDGE_VLAN_INFO_RANGE_END, opts.vidEnd));
    } else {
      parts.push(info(base, vid));
    }
    return nla(IFLA_AF_SPEC | NLA_F_NESTED, Buffer.concat(parts));
  }

  async bridgeVlanAdd(name: string, vid: number, opts: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean } = {}): Promise<void> {
    const index = await this.indexOf(name);
    const what = opts.vidEnd ? `${vid}-${opts.vidEnd}` : `${vid}`;
    await this.bridgeRequest(RTM_SETLINK, index, this.vlanSpec(vid, opts), `add VLAN ${what} to "${name}"`);
  }

  async bridgeVlanDel(name: string, vid: number, opts: { self?: boolean } = {}): Promise<boolean> {
    const link = await this.getLink(name);
    if (!link) return false;
    try {
      await this.bridgeRequest(RTM_DELLINK, link.index, this.vlanSpec(vid, opts), `remove VLAN ${vid} from "${name}"`);
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
    const msgs = await this.req('list addresses', () => this.sock.getAddresses());
    const out: AddressInfo[] = [];
    for (const m of msgs) {
      if (wanted !== undefined && m.data.index !== wanted) continue;
      const bytes = m.attrs.local ?? m.attrs.address;
      if (!bytes || (bytes.length !== 4 && bytes.length !== 16)) continue;
      const flags = m.attrs.flags ?? m.data.flags ?? {};
      out.push({
        index: m.data.index ?? 0,
        ifname: names.get(m.data.index ?? 0) ?? '',
        family: bytes.length === 4 ? 4 : 6,
        cidr: `${formatIp(ipFromBuffer(bytes))}/${m.data.prefixlen}`,
        scope: m.data.scope ?? 0,
        flags: { nodad: !!flags.nodad, tentative: !!flags.tentative, dadfailed: !!flags.dadfailed, permanent: !!flags.permanent },
      });
    }
    return out;
  }

  async addAddress(name: string, cidr: string, opts: { noDad?: boolean } = {}): Promise<void> {
    const c = parseCidr(cidr);
    const index = await this.indexOf(name);
    const bytes = ipToBuffer(c.ip);
    const attrs: rtStructs.AddressAttrs = { address: bytes };
    if (c.ip.family === 4) {
      attrs.local = bytes;
      // As iproute2's "brd +" and Go's netlink.AddrAdd do for prefixes that have one.
      if (c.prefixLen < 31) attrs.broadcast = ipToBuffer(lastOf(c));
    }
    if (opts.noDad) attrs.flags = { nodad: true };
    await this.req(`add address "${cidr}" to "${name}"`, () =>
      this.sock.newAddress({ family: familyNumber(c.ip.family), prefixlen: c.prefixLen, index }, attrs, { flags: CREATE_EXCL }));
  }

  async removeAddress(name: string, cidr: string): Promise<boolean> {
    const c = parseCidr(cidr);
    const link = await this.getLink(name);
    if (!link) return false;
    const bytes = ipToBuffer(c.ip);
    const done = await this.reqOrAbsent(`remove address "${cidr}" from "${name}"`, async () => {
      await this.sock.delAddress({ family: familyNumber(c.ip.family), prefixlen: c.prefixLen, index: link.index }, c.ip.family === 4 ? { local: bytes, address: bytes } : { address: bytes });
      return true;
    }, ['EADDRNOTAVAIL', 'ENOENT', 'ESRCH']);
    return done ?? false;
  }

  async listRoutes(family?: 4 | 6, table = RT_TABLE_MAIN): Promise<RouteInfo[]> {
    const links = await this.listLinks();
    const names = new Map(links.map((l) => [l.index, l.name]));
    const msgs = await this.req('list routes', () => this.sock.getRoutes(family ? { family: familyNumber(family) } : {}));
    const out: RouteInfo[] = [];
    for (const m of msgs) {
      const fam: 4 | 6 = m.data.family === AF_INET6 ? 6 : 4;
      if (m.data.family !== AF_INET && m.data.family !== AF_INET6) continue;
      const tbl = m.attrs.table ?? m.data.table ?? 0;
      if (table !== 0 && tbl !== table) continue;
      const dst = m.data.dstLen ? `${formatIp(ipFromBuffer(m.attrs.dst!))}/${m.data.dstLen}` : 'default';
      const scopeNum = typeof m.data.scope === 'number' ? m.data.scope : nl().gen.RouteScope[m.data.scope ?? 'UNIVERSE'];
      const typeNum = typeof m.data.type === 'number' ? m.data.type : nl().gen.RouteType[m.data.type ?? 'UNICAST'];
      const protoNum = typeof m.data.protocol === 'number' ? m.data.protocol : m.data.protocol ? nl().gen.RouteProtocol[m.data.protocol] : 0;
      out.push({
        family: fam,
        dst,
        gateway: m.attrs.gateway ? formatIp(ipFromBuffer(m.attrs.gateway)) : undefined,
        dev: m.attrs.oif ? names.get(m.attrs.oif) : undefined,
        table: tbl,
        priority: m.attrs.priority,
        scope: ((Object.keys(SCOPES) as RouteInfo['scope'][]).find((k) => SCOPES[k] === scopeNum)) ?? 'universe',
        protocol: protoNum,
        type: (['other', 'unicast', 'local', 'broadcast', 'other', 'multicast', 'blackhole', 'unreachable', 'prohibit'][typeNum] ?? 'other') as RouteInfo['type'],
      });
    }
    return out;
  }

  private async routeMsg(r: RouteSpec): Promise<{ data: rtStructs.Route; attrs: rtStructs.RouteAttrs; family: Family }> {
    let family: Family;
    const attrs: rtStructs.RouteAttrs = {};
    let dstLen = 0;
    if (r.dst === 'default') {
      family = r.family ?? (r.gateway ? parseIp(r.gateway).family : 4);
    } else {
      const c = parseCidr(r.dst);
      family = c.ip.family;
      dstLen = c.prefixLen;
      attrs.dst = ipToBuffer(c.ip);
    }
    if (r.gateway) attrs.gateway = ipToBuffer(parseIp(r.gateway));
    if (r.dev) attrs.oif = await this.indexOf(r.dev);
    if (r.priority !== undefined) attrs.priority = r.priority;
    const table = r.table ?? RT_TABLE_MAIN;
    if (table > 255) attrs.table = table;
    if (r.mtu || r.advmss) {
      const metrics: rtStructs.RouteMetrics = {};
      if (r.mtu) metrics.mtu = u32(r.mtu);
      if (r.advmss) metrics.advmss = u32(r.advmss);
      attrs.metrics = metrics;
    }
    const scope = r.scope ?? (r.gateway || !r.dev ? 'universe' : 'link');
    const data: rtStructs.Route = {
      family: familyNumber(family), dstLen, table: table > 255 ? 252 : table,
      protocol: r.protocol === 'static' ? 'STATIC' : 'BOOT', scope: SCOPES[scope], type: 'UNICAST',
    };
    return { data, attrs, family };
  }

  async addRoute(route: RouteSpec): Promise<void> {
    const { data, attrs } = await this.routeMsg(route);
    await this.req(`add route ${describeRoute(route)}`, () => this.sock.newRoute(data, attrs, { flags: CREATE_EXCL }));
  }

  async replaceRoute(route: RouteSpec): Promise<void> {
    const { data, attrs } = await this.routeMsg(route);
    await this.req(`replace route ${describeRoute(route)}`, () =>
      this.sock.newRoute(data, attrs, { flags: NLM_F_CREATE | NLM_F_REPLACE }));
  }

  async removeRoute(route: RouteSpec): Promise<boolean> {
    let msg;
    try {
      msg = await this.routeMsg(route);
    } catch (err) {
      if ((err as NetlinkError).code === 'ENODEV') return false;
      throw err;
    }
    const done = await this.reqOrAbsent(`remove route ${describeRoute(route)}`, async () => {
      await this.sock.delRoute({ ...msg.data, protocol: 0 as rtStructs.RouteProtocol, scope: SCOPES.nowhere }, msg.attrs);
      return true;
    }, ['ESRCH', 'ENOENT']);
    return done ?? false;
  }
}

function describeRoute(r: RouteSpec): string {
  return `"${r.dst}"${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev "${r.dev}"` : ''}`;
}
