/**
 * An in-memory NetlinkClient: a fake kernel with several namespaces, for unit
 * tests without root. It keeps the rules plugins depend on: unique names per
 * namespace, EEXIST/ENODEV errors, veth peers that die together, masters that
 * must be bridges, connected routes for addresses, and links moving between
 * namespaces.
 */
import os from 'node:os';
import { canonical, formatCidr, parseCidr, parseIp } from '../ip/addr.js';
import {
  NetlinkError, formatMac,
  type AddressInfo, type IpvlanMode, type LinkInfo, type MacvlanMode, type NetlinkClient, type NewLinkOptions,
  type RouteInfo, type RouteSpec, type VethOptions,
} from './client.js';

interface FakeLink extends LinkInfo {
  netns: string;
  peer?: FakeLink;
  addresses: { cidr: string; noDad: boolean }[];
  hairpin?: boolean;
  isolated?: boolean;
  /** vid -> flags */
  vlans?: Map<number, { pvid: boolean; untagged: boolean }>;
}

/** The shared state of every namespace of one fake machine. */
export class MemoryKernel {
  readonly links: FakeLink[] = [];
  readonly routes = new Map<string, RouteInfo[]>();
  private nextIndex = 2;
  private macCounter = 1;

  constructor() {
    this.ensureNetns('');
  }

  /** Creates a namespace with its loopback link (as the kernel does). */
  ensureNetns(netns: string): void {
    if (this.routes.has(netns)) return;
    this.routes.set(netns, []);
    this.links.push({ index: 1, name: 'lo', kind: 'loopback', mtu: 65536, mac: '00:00:00:00:00:00', up: false, operState: 'unknown', promisc: false, allmulti: false, netns, addresses: [] });
  }

  /** Deletes a namespace and every link in it (veth peers elsewhere die too). */
  deleteNetns(netns: string): void {
    for (const l of this.links.filter((x) => x.netns === netns)) this.drop(l);
    this.routes.delete(netns);
  }

  allocIndex(): number {
    return this.nextIndex++;
  }

  allocMac(): string {
    const n = this.macCounter++;
    return formatMac(Buffer.from([0x02, 0, (n >> 16) & 255, (n >> 8) & 255, n & 255, 0x01]));
  }

  drop(link: FakeLink): void {
    const i = this.links.indexOf(link);
    if (i >= 0) this.links.splice(i, 1);
    for (const [ns, rs] of this.routes) if (ns === link.netns) this.routes.set(ns, rs.filter((r) => r.dev !== link.name));
    for (const l of this.links) if (l.master === link.index && l.netns === link.netns) l.master = undefined;
    if (link.peer && this.links.includes(link.peer)) this.drop(link.peer);
  }
}

function err(code: string, message: string, netns: string): NetlinkError {
  return new NetlinkError(code, (os.constants.errno as Record<string, number>)[code] ?? 0, message, netns);
}

/** A NetlinkClient bound to one namespace of a MemoryKernel. */
export class MemoryNetlink implements NetlinkClient {
  constructor(readonly kernel: MemoryKernel, readonly netns = '') {
    kernel.ensureNetns(netns);
  }

  close(): void {}

  private find(name: string, netns = this.netns): FakeLink | undefined {
    return this.kernel.links.find((l) => l.netns === netns && l.name === name);
  }

  private must(name: string): FakeLink {
    const l = this.find(name);
    if (!l) throw err('ENODEV', `link "${name}" not found${this.netns ? ` in netns "${this.netns}"` : ''}`, this.netns);
    return l;
  }

  private create(name: string, kind: string, opts: NewLinkOptions, netns = opts.netns ?? this.netns): FakeLink {
    this.kernel.ensureNetns(netns);
    if (this.find(name, netns)) throw err('EEXIST', `cannot add ${kind} "${name}": EEXIST`, netns);
    const link: FakeLink = {
      index: this.kernel.allocIndex(), name, kind, mtu: opts.mtu ?? 1500, mac: opts.mac ?? this.kernel.allocMac(),
      up: false, operState: 'down', promisc: false, allmulti: false, netns, addresses: [],
    };
    this.kernel.links.push(link);
    return link;
  }

  private view(l: FakeLink): LinkInfo {
    const { netns: _n, peer: _p, addresses: _a, hairpin: _h, isolated: _i, vlans: _v, ...info } = l;
    return { ...info };
  }

  /** Test hook: the bridge port state of a link. */
  portState(name: string): { hairpin: boolean; isolated: boolean; vlans: [number, { pvid: boolean; untagged: boolean }][] } {
    const l = this.must(name);
    return { hairpin: !!l.hairpin, isolated: !!l.isolated, vlans: [...(l.vlans ?? new Map())].sort((a, b) => a[0] - b[0]) };
  }

  async setBridgePort(name: string, opts: { hairpin?: boolean; isolated?: boolean }): Promise<void> {
    const l = this.must(name);
    if (!l.master) throw err('EOPNOTSUPP', `cannot set bridge port flags on "${name}": EOPNOTSUPP`, this.netns);
    if (opts.hairpin !== undefined) l.hairpin = opts.hairpin;
    if (opts.isolated !== undefined) l.isolated = opts.isolated;
  }

  async bridgeVlanAdd(name: string, vid: number, opts: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean } = {}): Promise<void> {
    const l = this.must(name);
    l.vlans ??= new Map();
    for (let v = vid; v <= (opts.vidEnd ?? vid); v++) {
      if (opts.pvid) for (const f of l.vlans.values()) f.pvid = false;
      l.vlans.set(v, { pvid: !!opts.pvid, untagged: !!opts.untagged });
    }
  }

  async bridgeVlanDel(name: string, vid: number): Promise<boolean> {
    const l = this.find(name);
    return !!l?.vlans?.delete(vid);
  }

  async listLinks(): Promise<LinkInfo[]> {
    return this.kernel.links.filter((l) => l.netns === this.netns).map((l) => this.view(l));
  }

  async getLink(name: string): Promise<LinkInfo | null> {
    const l = this.find(name);
    return l ? this.view(l) : null;
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | null> {
    const l = this.kernel.links.find((x) => x.netns === this.netns && x.index === index);
    return l ? this.view(l) : null;
  }

  async addVeth(name: string, peerName: string, opts: VethOptions = {}): Promise<void> {
    const peerNs = opts.peerNetns ?? opts.netns ?? this.netns;
    this.kernel.ensureNetns(peerNs);
    if (this.find(peerName, peerNs)) throw err('EEXIST', `cannot add veth pair "${name}"/"${peerName}": EEXIST`, this.netns);
    const a = this.create(name, 'veth', opts);
    const b = this.create(peerName, 'veth', { mtu: opts.peerMtu ?? opts.mtu, mac: opts.peerMac }, peerNs);
    a.peer = b;
    b.peer = a;
    a.parentIndex = b.index;
    b.parentIndex = a.index;
  }

  async addBridge(name: string, opts: NewLinkOptions & { vlanFiltering?: boolean } = {}): Promise<void> {
    this.create(name, 'bridge', opts);
  }

  async addMacvlan(name: string, parent: string, mode: MacvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const p = this.must(parent);
    const l = this.create(name, 'macvlan', opts);
    l.parentIndex = p.index;
    l.mode = mode;
  }

  async addIpvlan(name: string, parent: string, mode: IpvlanMode, opts: NewLinkOptions = {}): Promise<void> {
    const p = this.must(parent);
    const l = this.create(name, 'ipvlan', { ...opts, mac: p.mac });
    l.parentIndex = p.index;
    l.mode = mode;
  }

  async removeLink(name: string): Promise<boolean> {
    const l = this.find(name);
    if (!l) return false;
    this.kernel.drop(l);
    return true;
  }

  async setUp(name: string, up: boolean): Promise<void> {
    const l = this.must(name);
    l.up = up;
    l.operState = up ? 'up' : 'down';
  }

  async setMaster(name: string, master: string | null): Promise<void> {
    const l = this.must(name);
    if (master === null) {
      l.master = undefined;
      return;
    }
    const m = this.must(master);
    if (m.kind !== 'bridge') throw err('EOPNOTSUPP', `cannot enslave "${name}" to "${master}": EOPNOTSUPP`, this.netns);
    l.master = m.index;
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    this.must(name).mtu = mtu;
  }

  async setMac(name: string, mac: string): Promise<void> {
    this.must(name).mac = mac.toLowerCase();
  }

  async setPromisc(name: string, on: boolean): Promise<void> {
    this.must(name).promisc = on;
  }

  async setAllmulti(name: string, on: boolean): Promise<void> {
    this.must(name).allmulti = on;
  }

  async rename(name: string, newName: string): Promise<void> {
    const l = this.must(name);
    if (this.find(newName)) throw err('EEXIST', `cannot rename "${name}" to "${newName}": EEXIST`, this.netns);
    l.name = newName;
  }

  async moveToNetns(name: string, netnsPath: string, newName?: string): Promise<void> {
    const l = this.must(name);
    this.kernel.ensureNetns(netnsPath);
    const target = newName ?? name;
    if (this.find(target, netnsPath)) throw err('EEXIST', `cannot move "${name}" to netns "${netnsPath}": EEXIST`, this.netns);
    this.kernel.routes.set(this.netns, (this.kernel.routes.get(this.netns) ?? []).filter((r) => r.dev !== name));
    l.netns = netnsPath;
    l.name = target;
    l.addresses = [];
    l.up = false;
    l.master = undefined;
  }

  async listAddresses(name?: string): Promise<AddressInfo[]> {
    const out: AddressInfo[] = [];
    for (const l of this.kernel.links) {
      if (l.netns !== this.netns || (name !== undefined && l.name !== name)) continue;
      for (const a of l.addresses) {
        const c = parseCidr(a.cidr);
        out.push({ index: l.index, ifname: l.name, family: c.ip.family, cidr: a.cidr, scope: 0, flags: { nodad: a.noDad, permanent: true } });
      }
    }
    return out;
  }

  async addAddress(name: string, cidr: string, opts: { noDad?: boolean } = {}): Promise<void> {
    const l = this.must(name);
    const c = parseCidr(cidr);
    if (l.addresses.some((a) => parseCidr(a.cidr).ip.value === c.ip.value)) throw err('EEXIST', `cannot add address "${cidr}" to "${name}": EEXIST`, this.netns);
    l.addresses.push({ cidr, noDad: !!opts.noDad });
    const routes = this.kernel.routes.get(this.netns)!;
    routes.push({ family: c.ip.family, dst: formatCidr(canonical(c)), dev: name, table: 254, scope: 'link', protocol: 2, type: 'unicast' });
  }

  async removeAddress(name: string, cidr: string): Promise<boolean> {
    const l = this.find(name);
    if (!l) return false;
    const before = l.addresses.length;
    l.addresses = l.addresses.filter((a) => a.cidr !== cidr);
    return l.addresses.length !== before;
  }

  async listRoutes(family?: 4 | 6, table = 254): Promise<RouteInfo[]> {
    return (this.kernel.routes.get(this.netns) ?? []).filter((r) => (!family || r.family === family) && (table === 0 || r.table === table)).map((r) => ({ ...r }));
  }

  private toInfo(r: RouteSpec): RouteInfo {
    const family = r.dst === 'default' ? (r.family ?? (r.gateway ? parseIp(r.gateway).family : 4)) : parseCidr(r.dst).ip.family;
    if (r.dev) this.must(r.dev);
    return {
      // As the kernel reports it: a zero-length prefix is "default".
      family, dst: r.dst === 'default' || parseCidr(r.dst).prefixLen === 0 ? 'default' : formatCidr(canonical(parseCidr(r.dst))), gateway: r.gateway, dev: r.dev,
      table: r.table ?? 254, priority: r.priority, scope: r.scope ?? (r.gateway || !r.dev ? 'universe' : 'link'), protocol: 3, type: 'unicast',
    };
  }

  private same(a: RouteInfo, b: RouteInfo): boolean {
    return a.family === b.family && a.dst === b.dst && a.table === b.table && (a.priority ?? 0) === (b.priority ?? 0);
  }

  async addRoute(route: RouteSpec): Promise<void> {
    const info = this.toInfo(route);
    const routes = this.kernel.routes.get(this.netns)!;
    if (routes.some((r) => this.same(r, info))) throw err('EEXIST', `cannot add route "${route.dst}": EEXIST`, this.netns);
    routes.push(info);
  }

  async replaceRoute(route: RouteSpec): Promise<void> {
    const info = this.toInfo(route);
    const routes = this.kernel.routes.get(this.netns)!.filter((r) => !this.same(r, info));
    routes.push(info);
    this.kernel.routes.set(this.netns, routes);
  }

  async removeRoute(route: RouteSpec): Promise<boolean> {
    if (route.dev && !this.find(route.dev)) return false;
    const info = this.toInfo(route);
    const routes = this.kernel.routes.get(this.netns)!;
    const i = routes.findIndex((r) => this.same(r, info) && (!route.gateway || r.gateway === route.gateway));
    if (i < 0) return false;
    routes.splice(i, 1);
    return true;
  }
}
