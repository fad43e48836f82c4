/**
 * `burrow network`: bridge networks as CNI conflists that podman accepts.
 *
 * A network is a file <cniConfigDir>/<name>.conflist with bridge (host-local
 * IPAM), portmap, firewall and tuning, as podman's CNI backend writes them.
 * The default network exists without a file (like podman's "podman" network)
 * until someone writes one with its name. Creation validates everything
 * before it writes one file atomically; removal refuses networks in use
 * unless forced, then tears their attachments down through the CNI runtime
 * and removes the file, the idle bridge and the empty IPAM store.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parseConfList, validName } from '../../net/cni/config.js';
import { findPlugin } from '../../net/cni/invoke.js';
import type { NetworkConfigList } from '../../net/cni/types.js';
import {
  defaultGateway, formatCidr, formatIp, networkOf, overlaps, parseCidr, sizeOf, offsetIp, type Cidr,
} from '../../net/ip/addr.js';
import { validIfname } from '../../net/netlink/client.js';
import { toolPath } from '../../native/system.js';
import { scanConfDir } from '../cni/confdir.js';
import type { BurrowConfig } from '../config.js';
import { NetworkError, applyIpRange, bridgeConflist, describe, ipamRanges, macvlanConflist, mainPlugin, parseGateway, type CreateOptions, type HostLink, type HostLocalRange, type HostRoute, type NetworkInfo } from './conflist.js';

/** podman's default network: its name and subnet (C containers/common, libnetwork/types). */
export const PODMAN_DEFAULT = { name: 'podman', subnet: '10.88.0.0/16' };

/** podman's default subnet as containers.conf sets it ([network] default_subnet; later files win). */
export function podmanDefaultSubnet(env: NodeJS.ProcessEnv = process.env): string {
  const files = env.CONTAINERS_CONF ? [env.CONTAINERS_CONF] : ['/usr/share/containers/containers.conf', '/etc/containers/containers.conf', ...(process.getuid?.() ? [path.join(env.XDG_CONFIG_HOME || path.join(env.HOME ?? '/', '.config'), 'containers', 'containers.conf')] : [])];
  let subnet = PODMAN_DEFAULT.subnet;
  for (const f of files) {
    try {
      const doc = parseToml(fs.readFileSync(f, 'utf8')) as { network?: { default_subnet?: unknown } };
      if (typeof doc.network?.default_subnet === 'string') subnet = doc.network.default_subnet;
    } catch {
      // absent or unreadable: podman's built-in value stands
    }
  }
  return subnet;
}

/**
 * Subnets burrow's built-in default network may take when the configured one is taken, in order.
 * 10.89.0.0/16 is left out: podman's and burrow's pools hand out /24s of it.
 */
const DEFAULT_SUBNET_FALLBACKS = ['10.90.0.0/16', '10.91.0.0/16', '10.92.0.0/16', '10.93.0.0/16', '10.94.0.0/16', '10.95.0.0/16', '10.96.0.0/16', '10.97.0.0/16', '10.98.0.0/16', '10.99.0.0/16'];

/** Networks of a config dir plus the built-in default; `errors` lists unreadable files. */
export class NetworkStore {
  /** `podmanInstalled`: podman's default network exists then, in memory, even without a file. */
  constructor(readonly config: BurrowConfig, private readonly podmanInstalled: () => boolean = () => toolPath('podman') !== null) {}

  /**
   * The default network and why it is the default. burrow never puts its own default network next
   * to podman's on the same subnet (two bridges, two identical routes):
   *  1. `network.default_network` set in burrow.toml: that network;
   *  2. burrow's built-in network still has attachments: it stays, until they are gone;
   *  3. podman's default network has a conflist here (Debian's podman ships one): burrow uses it,
   *     so burrow's and podman's containers share its bridge and its address store;
   *  4. otherwise burrow's built-in network, on `network.default_subnet` unless that overlaps a
   *     network here or podman's in-memory default (podman installed without a conflist): then on
   *     the first free subnet of 10.90-10.99.0.0/16.
   */
  resolveDefault(): { name: string; list: NetworkConfigList; reason: string } {
    const c = this.config;
    const lists = this.scan().lists;
    const file = (name: string) => lists.find((l) => l.name === name);
    if (c.explicit.includes('network.default_network')) {
      const f = file(c.defaultNetwork);
      return { name: c.defaultNetwork, list: f ?? this.builtin(c.defaultSubnet), reason: `network.default_network = "${c.defaultNetwork}" in ${c.source}` };
    }
    const own = file(c.defaultNetwork);
    if (own) return { name: c.defaultNetwork, list: own, reason: `burrow's default network, defined in ${own.file}` };
    const subnet = this.builtinSubnet(lists);
    if (this.hasAttachments(c.defaultNetwork)) return { name: c.defaultNetwork, list: this.builtin(subnet.subnet), reason: `burrow's built-in network, kept while containers are attached to it${subnet.why ? `; ${subnet.why}` : ''}` };
    const podman = file(PODMAN_DEFAULT.name);
    if (podman) return { name: podman.name, list: podman, reason: `podman's default network (${podman.file}): burrow uses it rather than create a second network on the same subnet, so burrow's and podman's containers share its bridge and addresses; set network.default_network in burrow.toml to choose another` };
    return { name: c.defaultNetwork, list: this.builtin(subnet.subnet), reason: `burrow's built-in network${subnet.why ? `; ${subnet.why}` : ''}` };
  }

  /** The default network's name. */
  defaultName(): string {
    return this.resolveDefault().name;
  }

  /** The subnet of the built-in default: the configured one, or the first free fallback (and why). */
  private builtinSubnet(lists: NetworkConfigList[]): { subnet: string; why: string } {
    const c = this.config;
    const taken = this.claimed(lists.filter((l) => l.name !== c.defaultNetwork));
    const clash = (s: string) => taken.find((t) => overlaps(t.cidr, parseCidr(s)));
    const first = clash(c.defaultSubnet);
    if (!first || c.explicit.includes('network.default_subnet')) return { subnet: c.defaultSubnet, why: first ? `network.default_subnet ${c.defaultSubnet} overlaps ${first.owner}, as configured` : '' };
    const free = DEFAULT_SUBNET_FALLBACKS.find((s) => !clash(s));
    if (!free) throw new NetworkError('ENOSPC', `burrow's default network has no free subnet: ${c.defaultSubnet} and 10.90-10.99.0.0/16 all overlap other networks; set network.default_subnet in burrow.toml`);
    return { subnet: free, why: `${c.defaultSubnet} is taken by ${first.owner}, so it uses ${free}` };
  }

  /**
   * podman's default network where it has no conflist in this directory: installed podman still
   * has it (in memory, or in its own network directory), and it claims its subnet on this host.
   */
  private podmanImplicit(lists: NetworkConfigList[]): { owner: string; cidr: Cidr } | null {
    if (lists.some((l) => l.name === PODMAN_DEFAULT.name) || !this.podmanInstalled()) return null;
    try {
      return { owner: "podman's default network", cidr: parseCidr(podmanDefaultSubnet()) };
    } catch {
      return null;
    }
  }

  /** True when libcni's cache holds attachments of `network` (containers still use it). */
  private hasAttachments(network: string): boolean {
    try {
      return fs.readdirSync(path.join(this.config.cniCacheDir, 'results')).some((n) => n.startsWith(`${network}-`) && !n.includes('.tmp-'));
    } catch {
      return false;
    }
  }

  private builtin(subnet: string): NetworkConfigList {
    const c = parseCidr(subnet, { strict: true });
    const doc = bridgeConflist(this.config.defaultNetwork, this.config.defaultBridge, [{ subnet: formatCidr(c), gateway: formatIp(defaultGateway(c)) }], { dataDir: this.config.ipamDataDir });
    return parseConfList(Buffer.from(JSON.stringify(doc, null, 2)));
  }

  private scan(): { lists: NetworkConfigList[]; errors: string[] } {
    const lists: NetworkConfigList[] = [];
    const errors: string[] = [];
    const seen = new Set<string>();
    for (const e of scanConfDir(this.config.cniConfigDir)) {
      if (e.error) errors.push(e.error.message);
      else if (e.list && !seen.has(e.list.name)) {
        seen.add(e.list.name);
        lists.push(e.list);
      }
    }
    return { lists, errors };
  }

  /** The default network's conflist (a file, or burrow's built-in one). */
  defaultList(): NetworkConfigList {
    return this.resolveDefault().list;
  }

  /** All networks, default first. */
  list(): { networks: NetworkInfo[]; errors: string[] } {
    const { lists, errors } = this.scan();
    const d = this.resolveDefault();
    const networks = lists.map((l) => (l.name === d.name ? { ...describe(l, true), default_reason: d.reason } : describe(l)));
    if (!lists.some((l) => l.name === d.name)) networks.unshift({ ...describe(d.list, true), default_reason: d.reason });
    return { networks, errors };
  }

  /** The conflist of a network by name (file first, then the default). */
  get(name: string): NetworkConfigList {
    const { lists, errors } = this.scan();
    const hit = lists.find((l) => l.name === name);
    if (hit) return hit;
    const d = this.resolveDefault();
    if (name === d.name) return d.list;
    const note = errors.length ? ` (${errors.length} unreadable file(s): ${errors.join('; ')})` : '';
    const builtin = name === this.config.defaultNetwork ? `; the default network is "${d.name}": ${d.reason}` : '';
    throw new NetworkError('ENOENT', `network "${name}" not found in "${this.config.cniConfigDir}"${note}${builtin}`);
  }

  exists(name: string): boolean {
    return name === this.defaultName() || this.scan().lists.some((l) => l.name === name);
  }

  /** Every subnet in use by a network (for overlap checks), with its owner. */
  private usedSubnets(): { owner: string; cidr: Cidr }[] {
    const { lists } = this.scan();
    const d = this.resolveDefault();
    return this.claimed(lists.some((l) => l.name === d.name) ? lists : [d.list, ...lists]);
  }

  /** The subnets `lists` use, with their owners, and podman's default network's where it has no conflist here. */
  private claimed(lists: NetworkConfigList[]): { owner: string; cidr: Cidr }[] {
    const out: { owner: string; cidr: Cidr }[] = [];
    for (const l of lists) {
      for (const r of ipamRanges(mainPlugin(l))) {
        try {
          out.push({ owner: `network "${l.name}"`, cidr: parseCidr(r.subnet) });
        } catch {
          // a foreign conflist with a bad subnet cannot block ours
        }
      }
    }
    const implicit = this.podmanImplicit(lists);
    if (implicit) out.push(implicit);
    return out;
  }

  private usedInterfaces(): Set<string> {
    const { lists } = this.scan();
    const names = new Set<string>([this.config.defaultBridge]);
    for (const l of lists) {
      const b = mainPlugin(l).bridge;
      if (typeof b === 'string') names.add(b);
    }
    return names;
  }

  private freeSubnet(family: 4 | 6, taken: Cidr[]): Cidr {
    const pools = family === 4 ? this.config.subnetPools : this.config.ipv6Pools;
    for (const pool of pools) {
      const base = parseCidr(pool.base, { strict: true });
      const step = sizeOf({ ip: base.ip, prefixLen: pool.size });
      const count = sizeOf(base) / step;
      for (let i = 0n; i < count && i < 65536n; i++) {
        const candidate: Cidr = { ip: offsetIp(networkOf(base), i * step)!, prefixLen: pool.size };
        if (!taken.some((t) => overlaps(t, candidate))) return candidate;
      }
    }
    throw new NetworkError('ENOSPC', `no free IPv${family} subnet left in the pools ${pools.map((p) => `${p.base} (/${p.size})`).join(', ')}: pass --subnet`);
  }

  /**
   * Validates and writes a new network. `hostRoutes` are prefixes already routed on the host:
   * automatic allocation avoids them and a given --subnet may not overlap one (a macvlan subnet
   * is the parent's LAN, which the host may well route: it is exempt).
   */
  create(name: string, opts: CreateOptions, hostRoutes: HostRoute[] = [], hostLinks: HostLink[] = []): NetworkInfo {
    const driver = opts.driver ?? 'bridge';
    if (!['bridge', 'macvlan', 'ipvlan'].includes(driver)) throw new NetworkError('EINVAL', `unsupported network driver "${driver}": burrow creates "bridge", "macvlan" and "ipvlan" networks`);
    if (!validName(name)) throw new NetworkError('EINVAL', `invalid network name "${name}": use letters, digits, "_", "." and "-", starting with a letter or digit`);
    if (this.exists(name)) throw new NetworkError('EEXIST', `network "${name}" already exists`);
    // podman's rule: a macvlan or ipvlan network without --subnet takes its addresses from the
    // LAN's DHCP server
    const ipamDriver = opts.ipamDriver ?? (driver !== 'bridge' && !opts.subnets?.length ? 'dhcp' : 'host-local');
    if (ipamDriver !== 'host-local' && ipamDriver !== 'dhcp') throw new NetworkError('EINVAL', `unsupported IPAM driver "${ipamDriver}": burrow supports host-local and dhcp`);
    if (ipamDriver === 'dhcp') {
      if (driver === 'bridge') throw new NetworkError('EINVAL', 'the dhcp IPAM driver needs a LAN with a DHCP server: use it with -d macvlan (or ipvlan) -o parent=IF');
      if (opts.subnets?.length || opts.ipRanges?.length || opts.gateways?.length) throw new NetworkError('EINVAL', 'the dhcp IPAM driver takes no --subnet, --gateway or --ip-range: the DHCP server assigns them');
      if (opts.internal) throw new NetworkError('EINVAL', 'the dhcp IPAM driver cannot be used with --internal');
      if (opts.ipv6) throw new NetworkError('EINVAL', 'the dhcp IPAM driver is IPv4 only (DHCPv4): leave --ipv6 out');
    }
    const o = { ...(opts.options ?? {}) };
    const known = new Set(driver === 'bridge' ? ['mtu', 'com.docker.network.bridge.name', 'com.docker.network.driver.mtu', 'isolate'] : driver === 'macvlan' ? ['mtu', 'parent', 'mode', 'host_shim'] : ['mtu', 'parent', 'mode']);
    for (const k of Object.keys(o)) if (!known.has(k)) throw new NetworkError('EINVAL', `unsupported ${driver} option "${k}" (supported: ${[...known].join(', ')})`);
    if (driver !== 'bridge') {
      if (!opts.subnets?.length && ipamDriver !== 'dhcp') throw new NetworkError('EINVAL', `a ${driver} network with host-local IPAM needs --subnet (the subnet of the parent's LAN); without --subnet it uses DHCP`);
      const modes = driver === 'macvlan' ? ['bridge', 'private', 'vepa', 'passthru'] : ['l2', 'l3', 'l3s'];
      const mode = o.mode ?? modes[0];
      if (!modes.includes(mode)) throw new NetworkError('EINVAL', `invalid ${driver} mode "${mode}": expected ${modes.join(', ')}`);
      if (o.parent) {
        const parent = hostLinks.find((l) => l.name === o.parent);
        if (!parent) throw new NetworkError('ENODEV', `parent interface "${o.parent}" does not exist`);
        if (parent.kind === 'macvlan' && parent.mode === 'passthru') throw new NetworkError('EINVAL', `parent interface "${o.parent}" is a macvlan in passthru mode and cannot be a parent`);
      }
      if (o.host_shim !== undefined && !['true', 'false'].includes(o.host_shim)) throw new NetworkError('EINVAL', `invalid host_shim "${o.host_shim}": expected true or false`);
    }
    const mtuText = o.mtu ?? o['com.docker.network.driver.mtu'];
    let mtu: number | undefined;
    if (mtuText !== undefined) {
      mtu = /^\d+$/.test(mtuText) ? Number(mtuText) : NaN;
      if (!(mtu >= 68 && mtu <= 65535)) throw new NetworkError('EINVAL', `invalid mtu "${mtuText}": expected a number from 68 to 65535`);
    }
    // A user's bridge lives in the user's network namespace, behind the userspace stack, whose cost
    // is per packet: its MTU (65520, slirp4netns's and pasta's) lets -p and outbound carry 64 KiB
    // segments instead of 1500-byte ones (measured: 0.9 against 8.6 Gbit/s through -p).
    if (mtu === undefined && driver === 'bridge' && process.getuid?.() !== 0) mtu = 65520;

    const used = this.usedSubnets();
    const subnets: Cidr[] = [];
    for (const s of opts.subnets ?? []) {
      let c: Cidr;
      try {
        c = parseCidr(s, { strict: true });
      } catch (err) {
        throw new NetworkError('EINVAL', (err as Error).message);
      }
      const clash = used.find((u) => overlaps(u.cidr, c));
      if (clash) throw new NetworkError('EEXIST', `subnet ${s} overlaps subnet ${formatCidr(clash.cidr)} of ${clash.owner}`);
      const routed = driver === 'bridge' ? hostRoutes.find((r) => overlaps(r.cidr, c)) : undefined;
      if (routed) throw new NetworkError('EEXIST', `subnet ${s} overlaps ${formatCidr(routed.cidr)}, which the host already routes via ${routed.dev}; choose another subnet, or leave --subnet out to get a free one`);
      const self = subnets.find((x) => overlaps(x, c));
      if (self) throw new NetworkError('EINVAL', `subnet ${s} overlaps subnet ${formatCidr(self)} given on the same command line`);
      if (c.ip.family === 4 ? c.prefixLen > 30 : c.prefixLen > 126) throw new NetworkError('EINVAL', `subnet ${s} is too small to allocate from`);
      subnets.push(c);
    }
    const taken = [...used.map((u) => u.cidr), ...hostRoutes.map((r) => r.cidr), ...subnets];
    // Like podman: no --subnet means one IPv4 subnet from the pool; --ipv6 adds an IPv6 one unless given.
    if (!subnets.length && ipamDriver !== 'dhcp') {
      const c = this.freeSubnet(4, taken);
      subnets.push(c);
      taken.push(c);
    }
    if (opts.ipv6 && !subnets.some((s) => s.ip.family === 6)) subnets.push(this.freeSubnet(6, taken));

    const gateways = opts.gateways ?? [];
    if (gateways.length > (opts.subnets?.length ?? 0)) throw new NetworkError('EINVAL', 'every --gateway needs a matching --subnet (in the same order)');
    const ranges: HostLocalRange[] = subnets.map((c, i) => {
      const gw = gateways[i] !== undefined ? parseGateway(gateways[i], c) : defaultGateway(c);
      return { subnet: formatCidr(c), gateway: formatIp(gw) };
    });
    for (const r of opts.ipRanges ?? []) applyIpRange(r, ranges);

    const created = new Date().toISOString();
    let doc: Record<string, unknown>;
    if (driver !== 'bridge') {
      doc = macvlanConflist(name, ranges, { dhcp: ipamDriver === 'dhcp', type: driver as 'macvlan' | 'ipvlan', parent: o.parent, mode: o.mode, hostShim: o.host_shim === 'true', internal: opts.internal, mtu, labels: opts.labels, options: o, created, dataDir: this.config.ipamDataDir });
    } else {
      const bridge = o['com.docker.network.bridge.name'] ?? this.nextBridgeName();
      if (!validIfname(bridge)) throw new NetworkError('EINVAL', `invalid bridge name "${bridge}": 1-15 characters without "/", ":" or spaces`);
      if (o['com.docker.network.bridge.name'] && this.usedInterfaces().has(bridge)) throw new NetworkError('EEXIST', `bridge name "${bridge}" is already used by another network`);
      if (o.isolate !== undefined && o.isolate !== 'true' && o.isolate !== 'false') throw new NetworkError('EINVAL', `invalid isolate option "${o.isolate}": true or false`);
      doc = bridgeConflist(name, bridge, ranges, { internal: opts.internal, mtu, labels: opts.labels, options: o, created, dataDir: this.config.ipamDataDir, isolate: o.isolate === 'true', // podman's rule: names only where a dnsname plugin is installed (the reference set has none)
        dns: !opts.disableDns && !opts.internal && findPlugin('dnsname', this.config.cniPath) !== null });
    }
    const file = path.join(this.config.cniConfigDir, `${name}.conflist`);
    writeAtomic(file, `${JSON.stringify(doc, null, 2)}\n`);
    return describe(parseConfList(fs.readFileSync(file), file));
  }

  private nextBridgeName(): string {
    const used = this.usedInterfaces();
    for (let i = 1; ; i++) if (!used.has(`burrow${i}`)) return `burrow${i}`;
  }

  /** Removes a network's file. The caller has torn down attachments first. */
  removeFile(name: string): string {
    if (name === this.defaultName() && !this.scan().lists.some((l) => l.name === name)) {
      throw new NetworkError('EPERM', `"${name}" is the default network and cannot be removed`);
    }
    const list = this.get(name);
    if (!list.file) throw new NetworkError('ENOENT', `network "${name}" has no config file`);
    fs.rmSync(list.file, { force: true });
    return list.file;
  }
}

function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, text, { mode: 0o644, flag: 'wx' });
    fs.linkSync(tmp, file); // fails with EEXIST instead of replacing a concurrent writer's file
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new NetworkError('EEXIST', `"${file}" already exists`);
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
