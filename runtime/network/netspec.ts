/**
 * `--network` values of `burrow run`, as podman takes them: the flag may repeat, and a CNI network
 * may carry per-network options after a colon, `NAME:ip=10.89.0.5,mac=02:..,interface_name=lan0`.
 * A value with no colon may list several networks separated by commas (`a,b`). `container:NAME`
 * and the special modes (usernet, pasta, slirp4netns, host, none) stand alone and take no options.
 */
import net from 'node:net';
import { parseMac, validIfname } from '../../net/netlink/client.js';
import { ContainerError } from '../container/containers.js';

/** One CNI attachment asked for: the network, the interface inside, and static ips/mac if given. */
export interface NetworkRequest {
  name: string;
  ifname: string;
  ips: string[];
  mac?: string;
  /** Names the container also answers to on this network (alias=, --network-alias). */
  aliases: string[];
}

export const SPECIAL_NETWORKS = ['usernet', 'host', 'none', 'pasta', 'slirp4netns'];
const OPTION_KEYS = ['alias', 'ip', 'ip6', 'mac', 'interface_name'];
/** A DNS name a container may answer to: podman's name rule, with inner dots. */
const ALIAS_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function checkAlias(alias: string, what: string): string {
  if (!ALIAS_RE.test(alias) || alias.length > 253 || alias.endsWith('.') || alias.includes('..')) throw new ContainerError(`${what}: "${alias}" cannot be a DNS name (letters, digits, "_", "-" and inner dots, starting with a letter or digit)`);
  return alias.toLowerCase();
}

/** A unicast MAC written as six colon-separated hex octets. */
export function checkMac(mac: string, what: string): string {
  let bytes: Buffer;
  try {
    bytes = parseMac(mac);
  } catch {
    throw new ContainerError(`${what}: "${mac}" is not a MAC address (six hex octets separated by colons)`);
  }
  if (bytes[0] & 1) throw new ContainerError(`${what}: ${mac} is a multicast address; a container needs a unicast one (even first octet)`);
  return mac.toLowerCase();
}

export function checkIp(ip: string, what: string, family?: 4 | 6): string {
  const f = net.isIP(ip);
  if (!f || (family && f !== family)) throw new ContainerError(`${what}: "${ip}" is not an IPv${family ?? '4 or IPv6'} address`);
  return ip;
}

/** Linux interface names (1-15 bytes, no slash, colon or whitespace, not "." or ".."), and not lo. */
export function checkIfname(name: string, what: string): string {
  if (name === 'lo') throw new ContainerError(`${what}: "lo" is the container's loopback`);
  if (!validIfname(name)) throw new ContainerError(`${what}: "${name}" is not a valid interface name (1-15 characters without "/", ":" or spaces)`);
  return name;
}

/** True when the values name a special mode or `container:` rather than CNI networks. */
export function isSpecialNetwork(value: string): boolean {
  return SPECIAL_NETWORKS.includes(value) || value.startsWith('container:');
}

/**
 * The CNI attachments that --network values ask for, in order (eth0, eth1, ... unless
 * interface_name says otherwise). Global --ip/--mac-address apply to a single network only.
 */
export function parseNetworkArgs(values: string[], global: { ip?: string; mac?: string; aliases?: string[] } = {}): NetworkRequest[] {
  const reqs: NetworkRequest[] = [];
  for (const value of values) {
    if (value.startsWith('container:')) {
      reqs.push({ name: value, ifname: '', ips: [], aliases: [] });
      continue;
    }
    const colon = value.indexOf(':');
    if (colon < 0) {
      for (const n of value.split(',').map((x) => x.trim())) {
        if (!n) throw new ContainerError(`--network ${value}: an empty network name`);
        reqs.push({ name: n, ifname: '', ips: [], aliases: [] });
      }
      continue;
    }
    const name = value.slice(0, colon).trim();
    if (!name) throw new ContainerError(`--network ${value}: a network name is needed before ":"`);
    if (SPECIAL_NETWORKS.includes(name)) throw new ContainerError(`--network ${value}: options after ":" apply to CNI networks; ${name} takes none`);
    const req: NetworkRequest = { name, ifname: '', ips: [], aliases: [] };
    for (const opt of value.slice(colon + 1).split(',')) {
      const eq = opt.indexOf('=');
      const key = eq < 0 ? opt : opt.slice(0, eq);
      const v = eq < 0 ? '' : opt.slice(eq + 1);
      if (!OPTION_KEYS.includes(key)) throw new ContainerError(`--network ${value}: unknown option "${key}" (valid: ${OPTION_KEYS.map((k) => `${k}=`).join(', ')})`);
      if (!v) throw new ContainerError(`--network ${value}: ${key} needs a value (${key}=...)`);
      const what = `--network ${name}: ${key}`;
      if (key === 'alias') {
        const a = checkAlias(v, what);
        if (!req.aliases.includes(a)) req.aliases.push(a);
      } else if (key === 'ip' || key === 'ip6') {
        const ip = checkIp(v, what, key === 'ip6' ? 6 : undefined);
        if (req.ips.some((x) => net.isIP(x) === net.isIP(ip))) throw new ContainerError(`--network ${value}: two IPv${net.isIP(ip)} addresses; give at most one per family`);
        req.ips.push(ip);
      } else if (key === 'mac') {
        if (req.mac) throw new ContainerError(`--network ${value}: mac given twice`);
        req.mac = checkMac(v, what);
      } else {
        if (req.ifname) throw new ContainerError(`--network ${value}: interface_name given twice`);
        req.ifname = checkIfname(v, what);
      }
    }
    reqs.push(req);
  }
  const names = reqs.map((r) => r.name);
  const special = names.find((n) => isSpecialNetwork(n));
  if (special && reqs.length > 1) throw new ContainerError(`--network ${values.join(' --network ')}: only CNI networks can be combined (usernet, pasta, slirp4netns, host, none and container: stand alone)`);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new ContainerError(`--network names ${dup} twice`);
  if (global.ip || global.mac) {
    const flag = global.ip ? '--ip' : '--mac-address';
    if (reqs.length > 1) throw new ContainerError(`${flag} with several networks is ambiguous: it would apply to each; give one network, or per network as NAME:${global.ip ? 'ip' : 'mac'}=...`);
    if (reqs.length === 1 && !special) {
      if (global.ip) {
        const ip = checkIp(global.ip, '--ip');
        if (reqs[0].ips.length) throw new ContainerError(`--ip and --network ${reqs[0].name}:ip=... both give the address: choose one`);
        reqs[0].ips.push(ip);
      }
      if (global.mac) {
        if (reqs[0].mac) throw new ContainerError(`--mac-address and --network ${reqs[0].name}:mac=... both give the MAC: choose one`);
        reqs[0].mac = checkMac(global.mac, '--mac-address');
      }
    }
  }
  if (global.aliases?.length) {
    if (special) throw new ContainerError(`--network-alias: ${special} has no container names; aliases need a CNI network`);
    const aliases = global.aliases.map((a) => checkAlias(a, '--network-alias'));
    for (const r of reqs) for (const a of aliases) if (!r.aliases.includes(a)) r.aliases.push(a);
  }
  // default names fill in around the ones given: eth0, eth1, ... skipping names already taken
  const taken = new Set(reqs.map((r) => r.ifname).filter(Boolean));
  if (taken.size !== reqs.filter((r) => r.ifname).length) throw new ContainerError('--network: two networks ask for the same interface_name');
  let next = 0;
  for (const r of reqs) {
    if (r.ifname) continue;
    while (taken.has(`eth${next}`)) next++;
    r.ifname = `eth${next}`;
    taken.add(r.ifname);
  }
  return reqs;
}
