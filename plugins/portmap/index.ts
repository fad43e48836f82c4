/**
 * portmap (chained): publishes container ports on the host from
 * runtimeConfig.portMappings, with the reference's options (snat, masqAll,
 * markMasqBit, externalSetMarkChain, conditionsV4/V6, backend) and rules
 * (net/firewall/portmap.ts). With no mappings it touches nothing (plugins#510).
 * For IPv4 it sets route_localnet on the interface that routes to the
 * container, so 127.0.0.1:hostPort works, and flushes UDP conntrack entries
 * of the mapped ports so an earlier flow cannot shadow the new mapping.
 */
import { spawn } from 'node:child_process';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import { contains, formatIp, ipFamily, parseCidr, type Cidr, type Family } from '../../net/ip/addr.js';
import { lockedBackend } from '../../net/firewall/lock.js';
import type { PortMapping, PortmapBackend, PortmapOptions, PortmapTarget, Protocol } from '../../net/firewall/portmap.js';
import { IptablesPortmap } from '../../net/firewall/portmap_iptables.js';
import { NftablesPortmap } from '../../net/firewall/portmap_nft.js';
import { toolPath } from '../../native/system.js';
import { onPath, pickBackend } from '../../net/firewall/run.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { ProcSysctl } from '../../net/netlink/sysctl.js';
import { configError, optBool, optInt, optString } from '../common.js';

/** The portmap backend of `kind`, each method under the firewall lock. */
function portmapBackend(kind: 'iptables' | 'nftables'): PortmapBackend {
  return lockedBackend(kind === 'iptables' ? new IptablesPortmap() : new NftablesPortmap());
}

type Obj = Record<string, unknown>;

export interface PortmapConf {
  mappings: PortMapping[];
  options: PortmapOptions;
  backend?: 'iptables' | 'nftables';
}

function parseMappings(v: unknown): PortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw configError('invalid runtimeConfig.portMappings: expected a list');
  return v.map((raw, i) => {
    const m = (raw ?? {}) as Obj;
    const port = (k: string) => {
      const p = m[k];
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw configError(`Invalid ${k === 'hostPort' ? 'host' : 'container'} port number: ${JSON.stringify(p)} (portMappings[${i}]; must be 1-65535)`);
      return p;
    };
    const protocol = String(m.protocol ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw configError(`unknown protocol ${JSON.stringify(m.protocol)} in portMappings[${i}]: expected tcp, udp or sctp`);
    const hostIP = m.hostIP === undefined || m.hostIP === null ? '' : String(m.hostIP);
    if (hostIP && !ipFamily(hostIP)) throw configError(`invalid hostIP "${hostIP}" in portMappings[${i}]`);
    return { hostPort: port('hostPort'), containerPort: port('containerPort'), protocol: protocol as Protocol, hostIP };
  });
}

function conditions(c: Obj, key: string): string[] | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw configError(`invalid "${key}": expected a list of strings`);
  return v as string[];
}

export function parsePortmapConf(req: PluginRequest): PortmapConf {
  const c = req.config;
  const rc = (c.runtimeConfig ?? {}) as Obj;
  const backend = optString(c, 'backend');
  if (backend !== undefined && backend !== 'iptables' && backend !== 'nftables') throw configError(`invalid "backend" "${backend}": expected "iptables" or "nftables"`);
  const markBit = optInt(c, 'markMasqBit', 0, 31);
  const external = optString(c, 'externalSetMarkChain');
  if (markBit !== undefined && external) throw configError('cannot specify externalSetMarkChain and markMasqBit');
  if (external && backend === 'nftables') throw configError('externalSetMarkChain is an iptables option: it cannot be used with the nftables backend');
  const v4 = conditions(c, 'conditionsV4');
  const v6 = conditions(c, 'conditionsV6');
  const looksIptables = (x?: string[]) => !!x?.length && /^[-!]/.test(x[0]);
  if (backend === 'nftables' && (looksIptables(v4) || looksIptables(v6))) throw configError('conditionsV4/V6 hold iptables syntax but the backend is nftables');
  const inferred = backend ?? (looksIptables(v4) || looksIptables(v6) || external ? 'iptables' : undefined);
  return {
    mappings: parseMappings(rc.portMappings),
    backend: inferred,
    options: {
      snat: optBool(c, 'snat', true),
      masqAll: optBool(c, 'masqAll'),
      markBit: 1 << (markBit ?? 13),
      externalSetMarkChain: external,
      conditionsV4: v4,
      conditionsV6: v6,
    },
  };
}

/** The container's first address of each family, on the interface CNI_IFNAME in its sandbox. */
export function containerIps(req: PluginRequest, prev: Result): Map<Family, Cidr> {
  const out = new Map<Family, Cidr>();
  const ifaces = prev.interfaces ?? [];
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined) {
      const iface = ifaces[ip.interface];
      if (!iface || iface.name !== req.ifname || !iface.sandbox) continue;
    }
    const c = parseCidr(ip.address);
    if (!out.has(c.ip.family)) out.set(c.ip.family, c);
  }
  return out;
}

function backendFor(conf: PortmapConf): PortmapBackend {
  return portmapBackend(pickBackend(conf.backend, 'portmap'));
}

function target(req: PluginRequest): PortmapTarget {
  return { network: String(req.config.name ?? ''), containerId: req.containerId, ifname: req.ifname };
}

/** route_localnet=1 on the host interface whose route covers the container (for 127.0.0.1:hostPort). */
async function enableRouteLocalnet(ctr: Cidr): Promise<void> {
  const nl = new RtnlClient('');
  try {
    const routes = await nl.listRoutes(4, 0);
    let best: { dev?: string; len: number } = { len: -1 };
    for (const r of routes) {
      if (r.dst === 'default' || !r.dev) continue;
      const c = parseCidr(r.dst);
      if (contains(c, ctr.ip) && c.prefixLen > best.len) best = { dev: r.dev, len: c.prefixLen };
    }
    if (best.dev) new ProcSysctl('').set(`net/ipv4/conf/${best.dev}/route_localnet`, '1');
  } finally {
    nl.close();
  }
}

/** Drops UDP conntrack entries of the mapped ports (failures only matter to the log, as in the reference). */
async function flushUdpConntrack(mappings: PortMapping[]): Promise<void> {
  if (!onPath('conntrack')) return;
  for (const m of mappings.filter((x) => x.protocol === 'udp')) {
    await new Promise<void>((resolve) => {
      const c = spawn(toolPath('conntrack') ?? 'conntrack', ['-D', '-p', 'udp', '--orig-port-dst', String(m.hostPort)], { stdio: 'ignore' });
      c.on('close', () => resolve());
      c.on('error', () => resolve());
    });
  }
}

function asCni(err: unknown): CniError {
  return err instanceof CniError ? err : new CniError(CniCode.Internal, (err as Error).message);
}

export const portmap: CniPlugin = {
  name: 'portmap',
  supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],

  async add(req) {
    const conf = parsePortmapConf(req);
    if (!req.prevResult) throw new CniError(CniCode.InvalidNetworkConfig, 'must be called as chained plugin: prevResult is missing');
    if (!conf.mappings.length) return req.prevResult;
    const ips = containerIps(req, req.prevResult);
    if (!ips.size) throw new CniError(CniCode.Internal, `no IP addresses of interface "${req.ifname}" in prevResult: nothing to map ports to`);
    const backend = backendFor(conf);
    const t = target(req);
    try {
      for (const ip of ips.values()) await backend.setup(t, ip, conf.mappings, conf.options);
      const v4 = ips.get(4);
      if (v4 && conf.options.snat) await enableRouteLocalnet(v4);
      await flushUdpConntrack(conf.mappings);
    } catch (err) {
      await backend.teardown(t).catch(() => undefined); // no partial rules
      throw asCni(err);
    }
    return req.prevResult;
  },

  async del(req) {
    const conf = parsePortmapConf(req);
    if (!conf.mappings.length) return; // never touch the firewall when there is nothing to do
    const backend = backendFor(conf);
    try {
      if (!(await backend.teardown(target(req))) && !conf.backend) {
        // Written by the other backend (another version or configuration)?
        const other = backend.kind === 'iptables' ? (onPath('nft') ? portmapBackend('nftables') : null) : (onPath('iptables-restore') ? portmapBackend('iptables') : null);
        await other?.teardown(target(req));
      }
    } catch (err) {
      throw asCni(err);
    }
  },

  async check(req) {
    const conf = parsePortmapConf(req);
    if (!conf.mappings.length || !req.prevResult) return;
    const backend = backendFor(conf);
    for (const [family, ip] of containerIps(req, req.prevResult)) {
      if (!conf.mappings.some((m) => !m.hostIP || ipFamily(m.hostIP) === family)) continue;
      if (!(await backend.has(target(req), family))) throw new CniError(CniCode.Internal, `port mappings of "${req.containerId}" for ${formatIp(ip.ip)} are missing`);
    }
  },

  async status() {},

  async gc(req) {
    const conf = parsePortmapConf(req);
    const valid = new Set((req.validAttachments ?? []).map((a) => a.containerID));
    const network = String(req.config.name ?? '');
    for (const kind of ['iptables', 'nftables'] as const) {
      if (conf.backend && conf.backend !== kind) continue;
      if (!onPath(kind === 'iptables' ? 'iptables-restore' : 'nft')) continue;
      try {
        await portmapBackend(kind).gc(network, valid);
      } catch (err) {
        throw asCni(err);
      }
    }
  },
};
