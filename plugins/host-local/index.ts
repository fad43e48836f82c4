/**
 * host-local IPAM: addresses from configured ranges, kept in a store on disk
 * that the reference host-local can share (see net/ipam/disk_store.ts).
 *
 * Configuration as the reference: `ipam.ranges` (range sets), the legacy
 * top-level subnet/rangeStart/rangeEnd/gateway (prepended as set 0),
 * runtimeConfig.ipRanges (prepended), routes, dataDir, resolvConf, and
 * requested addresses from CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips.
 *
 * Beyond the reference: GC (spec 1.1.0) releases every reservation of the
 * network that is not a valid attachment, and STATUS reports whether every
 * range set still has a free address.
 */
import fs from 'node:fs';
import { DiskStore } from '../../net/ipam/disk_store.js';
import {
  allocate, canonicalizeRangeSet, checkRangeSetsDisjoint, countFree, formatRangeSet, IpamError, type RangeSet,
} from '../../net/ipam/allocator.js';
import type { Store } from '../../net/ipam/store.js';
import { formatCidr, formatIp, ipFamily, parseCidr, parseIp, type Ip } from '../../net/ip/addr.js';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Dns, type Result, type Route } from '../../net/cni/types.js';
import { compareVersions } from '../../net/cni/version.js';
import { configError, loadArgs } from '../common.js';

export interface HostLocalConfig {
  network: string;
  rangeSets: RangeSet[];
  routes: Route[];
  dataDir: string;
  resolvConf?: string;
  requested: Ip[];
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** Parses a requested address: an IP, or a CIDR whose mask is ignored (as the reference). */
function requestedIp(text: unknown, where: string): Ip {
  if (typeof text !== 'string') throw configError(`invalid requested IP ${JSON.stringify(text)} in ${where}`);
  const bare = text.includes('/') ? text.slice(0, text.indexOf('/')) : text;
  if (!ipFamily(bare)) throw configError(`invalid requested IP "${text}" in ${where}`);
  return parseIp(bare);
}

function parseRoutes(v: unknown): Route[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw configError('invalid ipam "routes": expected a list of {"dst": CIDR, "gw": IP}');
  return v.map((r, i) => {
    const o = obj(r);
    if (!o || typeof o.dst !== 'string') throw configError(`invalid ipam routes[${i}]: missing "dst"`);
    try {
      parseCidr(o.dst);
      if (o.gw !== undefined) parseIp(String(o.gw));
    } catch (err) {
      throw configError(`invalid ipam routes[${i}]: ${(err as Error).message}`);
    }
    return { ...(o as unknown as Route) };
  });
}

/** Parses and validates the host-local part of a request. Throws CniError(7) naming the problem. */
export function parseHostLocalConfig(req: PluginRequest): HostLocalConfig {
  const config = req.config;
  const ipam = obj(config.ipam);
  if (!ipam) throw configError('IPAM config missing \'ipam\' key');
  const network = typeof config.name === 'string' ? config.name : '';
  if (!network) throw configError('missing network name');
  const rawSets: unknown[] = [];
  const rc = obj(config.runtimeConfig);
  if (rc && Array.isArray(rc.ipRanges)) rawSets.push(...rc.ipRanges);
  if (ipam.subnet !== undefined) rawSets.push([{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }]);
  if (ipam.ranges !== undefined && !Array.isArray(ipam.ranges)) throw configError('invalid ipam "ranges": expected a list of range sets');
  rawSets.push(...((ipam.ranges as unknown[] | undefined) ?? []));
  if (!rawSets.length) throw configError('no IP ranges specified');
  let rangeSets: RangeSet[];
  try {
    rangeSets = rawSets.map((s, i) => canonicalizeRangeSet(s, i));
    checkRangeSetsDisjoint(rangeSets);
  } catch (err) {
    if (err instanceof IpamError) throw configError(`invalid ipam config: ${err.message}`);
    throw err;
  }
  if (compareVersions(req.cniVersion, '0.3.0') < 0) {
    for (const fam of [4, 6]) {
      if (rangeSets.filter((s) => s[0].subnet.ip.family === fam).length > 1) {
        throw configError(`CNI version ${req.cniVersion} does not support more than 1 address per family`);
      }
    }
  }
  const requested: Ip[] = [];
  const args = loadArgs(req, ['IP']);
  for (const ip of (args.get('IP') ?? '').split(',').filter(Boolean)) requested.push(requestedIp(ip, 'CNI_ARGS IP='));
  const cniArgs = obj(obj(config.args)?.cni);
  if (cniArgs && Array.isArray(cniArgs.ips)) for (const ip of cniArgs.ips) requested.push(requestedIp(ip, 'args.cni.ips'));
  if (rc && Array.isArray(rc.ips)) for (const ip of rc.ips) requested.push(requestedIp(ip, 'runtimeConfig.ips'));
  const dataDir = ipam.dataDir === undefined ? '' : ipam.dataDir;
  if (typeof dataDir !== 'string') throw configError('invalid ipam "dataDir": expected a path');
  const resolvConf = ipam.resolvConf;
  if (resolvConf !== undefined && typeof resolvConf !== 'string') throw configError('invalid ipam "resolvConf": expected a path');
  return { network, rangeSets, routes: parseRoutes(ipam.routes), dataDir, resolvConf: resolvConf || undefined, requested };
}

/** nameserver/domain/search/options lines of a resolv.conf. */
export function parseResolvConf(text: string): Dns {
  const dns: Dns = {};
  for (const line of text.split('\n')) {
    const f = line.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (f[0] === 'nameserver' && f[1]) (dns.nameservers ??= []).push(f[1]);
    else if (f[0] === 'domain' && f[1]) dns.domain = f[1];
    else if (f[0] === 'search') dns.search = f.slice(1);
    else if (f[0] === 'options') (dns.options ??= []).push(...f.slice(1));
  }
  return dns;
}

/** Runs `fn` with the store locked; always unlocks and closes. */
async function withStore<T>(cfg: HostLocalConfig, fn: (store: Store) => T, open: (c: HostLocalConfig) => Store): Promise<T> {
  const store = open(cfg);
  try {
    await store.lock();
    try {
      return fn(store);
    } finally {
      await store.unlock();
    }
  } finally {
    store.close();
  }
}

function toCni(err: unknown): CniError {
  if (err instanceof CniError) return err;
  return new CniError(CniCode.Internal, (err as Error).message);
}

/** host-local with an injectable store (the disk store by default). */
export function makeHostLocal(open: (c: HostLocalConfig) => Store = (c) => new DiskStore(c.network, c.dataDir)): CniPlugin {
  return {
    name: 'host-local',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],

    async add(req) {
      const cfg = parseHostLocalConfig(req);
      const result: Result = { cniVersion: '1.1.0', ips: [], dns: {} };
      if (cfg.resolvConf) {
        try {
          result.dns = parseResolvConf(fs.readFileSync(cfg.resolvConf, 'utf8'));
        } catch (err) {
          throw configError(`cannot read resolvConf "${cfg.resolvConf}": ${(err as Error).message}`);
        }
      }
      const owner = { id: req.containerId, ifname: req.ifname };
      const pending = [...cfg.requested];
      await withStore(cfg, (store) => {
        const reserved: Ip[] = [];
        try {
          cfg.rangeSets.forEach((set, idx) => {
            const i = pending.findIndex((ip) => set.some((r) => r.subnet.ip.family === ip.family && ip.value >= r.rangeStart.value && ip.value <= r.rangeEnd.value));
            const want = i >= 0 ? pending.splice(i, 1)[0] : null;
            try {
              const a = allocate(store, set, idx, owner, want);
              reserved.push(a.address.ip);
              result.ips!.push({ address: formatCidr(a.address), gateway: formatIp(a.gateway) });
            } catch (err) {
              throw new CniError(CniCode.Internal, `failed to allocate for range ${idx}: ${(err as Error).message}`);
            }
          });
          if (pending.length) throw new CniError(CniCode.Internal, `failed to allocate all requested IPs: ${pending.map(formatIp).join(' ')}`);
        } catch (err) {
          // Release what this call reserved, and only that: an earlier reservation of the same
          // owner (a duplicate ADD) must survive its failed repeat.
          for (const ip of reserved) store.release(ip);
          throw toCni(err);
        }
      }, open);
      if (cfg.routes.length) result.routes = cfg.routes;
      return result;
    },

    async del(req) {
      const cfg = parseHostLocalConfig(req);
      await withStore(cfg, (store) => void store.releaseByOwner({ id: req.containerId, ifname: req.ifname }), open);
    },

    async check(req) {
      const cfg = parseHostLocalConfig(req);
      const held = await withStore(cfg, (store) => store.getByOwner({ id: req.containerId, ifname: req.ifname }), open);
      if (!held.length) throw new CniError(CniCode.Internal, `host-local: Failed to find address added by container ${req.containerId}`);
    },

    async status(req) {
      const cfg = parseHostLocalConfig(req);
      const full = await withStore(cfg, (store) => cfg.rangeSets.filter((set) => countFree(store, set) === 0n), open);
      if (full.length) {
        throw new CniError(CniCode.PluginNotAvailable, `no IP addresses available in range set: ${full.map(formatRangeSet).join('; ')}`);
      }
    },

    async gc(req) {
      const cfg = parseHostLocalConfig(req);
      const valid = req.validAttachments ?? [];
      await withStore(cfg, (store) => {
        for (const r of store.list()) {
          const keep = valid.some((a) => a.containerID === r.id && (a.ifname === r.ifname || r.ifname === ''));
          if (!keep) store.release(r.ip);
        }
      }, open);
    },
  };
}

export const hostLocal = makeHostLocal();
