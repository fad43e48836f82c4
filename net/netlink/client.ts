/**
 * The NetlinkClient seam: links, addresses and routes of one network namespace.
 *
 * Two implementations sit behind it: `rtnl_client.ts` speaks rtnetlink to the
 * kernel, `memory_client.ts` is an in-memory fake with the kernel's rules for
 * names, masters and namespaces, for unit tests without root. Addresses and
 * routes are strings ("10.88.0.2/16", "default") at this seam; conversion to
 * bytes stays inside the real client.
 */
import { BurrowError } from '../../native/errors.js';

export type LinkKind = 'veth' | 'bridge' | 'macvlan' | 'ipvlan' | 'tun' | 'vlan' | 'vxlan' | 'loopback' | string;

/** A link as the kernel reports it. */
export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND, or "loopback"/"" for links without one. */
  kind: LinkKind;
  mtu: number;
  /** "aa:bb:cc:dd:ee:ff", lowercase. */
  mac: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** IF_OPER_* as text: "up", "down", "unknown", "lowerlayerdown", ... */
  operState: string;
  /** Index of the bridge this link is enslaved to. */
  master?: number;
  /** IFLA_LINK: the parent (macvlan/ipvlan/vlan) or the veth peer index, possibly in another netns. */
  parentIndex?: number;
  /** IFLA_LINK_NETNSID: set when parentIndex lives in another namespace. */
  linkNetnsId?: number;
  promisc: boolean;
  allmulti: boolean;
  /** macvlan mode ("bridge", "private", "vepa", "passthru", "source") or ipvlan mode ("l2", "l3", "l3s"). */
  mode?: string;
}

export interface AddressInfo {
  index: number;
  ifname: string;
  family: 4 | 6;
  /** "10.88.0.2/16" */
  cidr: string;
  scope: number;
  flags: { nodad?: boolean; tentative?: boolean; dadfailed?: boolean; permanent?: boolean };
}

export interface RouteInfo {
  family: 4 | 6;
  /** "10.88.0.0/16", or "default" for the zero prefix. */
  dst: string;
  gateway?: string;
  /** Output interface name. */
  dev?: string;
  table: number;
  priority?: number;
  scope: 'universe' | 'site' | 'link' | 'host' | 'nowhere';
  protocol: number;
  type: 'unicast' | 'local' | 'broadcast' | 'multicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'other';
}

export interface RouteSpec {
  /** "10.88.0.0/16" or "default" (then `family` is required). */
  dst: string;
  family?: 4 | 6;
  gateway?: string;
  dev?: string;
  table?: number;
  priority?: number;
  scope?: RouteInfo['scope'];
  mtu?: number;
  advmss?: number;
  /** RTPROT_BOOT by default; 'static' as netavark and `ip route add ... proto static` set. */
  protocol?: 'boot' | 'static';
}

export interface NewLinkOptions {
  mtu?: number;
  mac?: string;
  /** Create the link directly in this netns (a path). */
  netns?: string;
  txqlen?: number;
}

export interface VethOptions extends NewLinkOptions {
  /** Create the peer directly in this netns (a path); else next to the first end. */
  peerNetns?: string;
  peerMtu?: number;
  peerMac?: string;
}

export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru' | 'source';
export type IpvlanMode = 'l2' | 'l3' | 'l3s';

/**
 * Operations on the links, addresses and routes of one network namespace.
 * Names are resolved in that namespace. Create calls fail with EEXIST when the
 * object exists; `remove*` calls return false when it was already gone.
 * Every failure is a NetlinkError naming the action, object and namespace.
 */
export interface NetlinkClient {
  /** The netns path this client works in; "" for the caller's own. */
  readonly netns: string;
  listLinks(): Promise<LinkInfo[]>;
  /** The link, or null when absent. */
  getLink(name: string): Promise<LinkInfo | null>;
  getLinkByIndex(index: number): Promise<LinkInfo | null>;
  addVeth(name: string, peerName: string, opts?: VethOptions): Promise<void>;
  addBridge(name: string, opts?: NewLinkOptions & { vlanFiltering?: boolean }): Promise<void>;
  addMacvlan(name: string, parent: string, mode: MacvlanMode, opts?: NewLinkOptions): Promise<void>;
  addIpvlan(name: string, parent: string, mode: IpvlanMode, opts?: NewLinkOptions): Promise<void>;
  removeLink(name: string): Promise<boolean>;
  setUp(name: string, up: boolean): Promise<void>;
  /** Enslaves to a bridge, or releases with null. */
  setMaster(name: string, master: string | null): Promise<void>;
  setMtu(name: string, mtu: number): Promise<void>;
  setMac(name: string, mac: string): Promise<void>;
  setPromisc(name: string, on: boolean): Promise<void>;
  setAllmulti(name: string, on: boolean): Promise<void>;
  rename(name: string, newName: string): Promise<void>;
  /** Moves a link into the netns at `netnsPath` (optionally renaming it there). */
  moveToNetns(name: string, netnsPath: string, newName?: string): Promise<void>;
  /** Bridge port flags of a link enslaved to a bridge (hairpin = IFLA_BRPORT_MODE, isolated). */
  setBridgePort(name: string, opts: { hairpin?: boolean; isolated?: boolean }): Promise<void>;
  /**
   * Adds VLAN `vid` (or the range vid..vidEnd) to a bridge port, or to the bridge device itself
   * with `self`; pvid/untagged as `bridge vlan add ... pvid untagged`.
   */
  bridgeVlanAdd(name: string, vid: number, opts?: { vidEnd?: number; pvid?: boolean; untagged?: boolean; self?: boolean }): Promise<void>;
  /** Removes VLAN `vid` from a bridge port (or the bridge itself with `self`). False when it was not there. */
  bridgeVlanDel(name: string, vid: number, opts?: { self?: boolean }): Promise<boolean>;
  listAddresses(name?: string): Promise<AddressInfo[]>;
  addAddress(name: string, cidr: string, opts?: { noDad?: boolean }): Promise<void>;
  removeAddress(name: string, cidr: string): Promise<boolean>;
  listRoutes(family?: 4 | 6, table?: number): Promise<RouteInfo[]>;
  addRoute(route: RouteSpec): Promise<void>;
  /** Adds or replaces (NLM_F_REPLACE). */
  replaceRoute(route: RouteSpec): Promise<void>;
  removeRoute(route: RouteSpec): Promise<boolean>;
  close(): void;
}

/** A failed netlink request: `code` is the errno name ("EEXIST"). */
export class NetlinkError extends BurrowError {
  readonly errno: number;
  readonly netns: string;
  constructor(code: string, errno: number, message: string, netns: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
    this.netns = netns;
  }
}

/** Parses "aa:bb:cc:dd:ee:ff" into 6 bytes; throws on anything else. */
export function parseMac(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new BurrowError('EINVAL', `invalid MAC address "${mac}"`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** Formats bytes as lowercase "aa:bb:...". */
export function formatMac(b: Uint8Array | undefined): string {
  if (!b) return '';
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** A random locally administered unicast MAC. */
export function randomMac(random: (n: number) => Buffer): string {
  const b = random(6);
  b[0] = (b[0] & 0xfe) | 0x02;
  return formatMac(b);
}

/** Linux interface name rules: 1-15 bytes, not "." or "..", no "/", ":" or whitespace. */
export function validIfname(name: string): boolean {
  return Buffer.byteLength(name) >= 1 && Buffer.byteLength(name) <= 15 && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}
