/**
 * CNI version handling: comparison, negotiation, and conversion of results
 * between the 0.2.0, 0.3.x/0.4.0 and 1.x shapes (as libcni's types packages).
 *
 * Conversions go through the 1.1.0 shape. Down-conversion drops what the
 * older shape cannot hold (route metrics, interface mtu) and, for 0.2.0,
 * keeps only the first address of each family, as libcni does.
 */
import { parseCidr } from '../ip/addr.js';
import { CniCode, CniError, type Ip020, type Result, type Result020, type Result040 } from './types.js';

/** Every version this implementation speaks, oldest first. */
export const ALL_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
/** The newest spec version. */
export const CURRENT_VERSION = '1.1.0';

const VERSION_RE = /^(\d+)\.(\d+)\.(\d+)$/;

/** True for "X.Y.Z". */
export function isVersion(v: unknown): v is string {
  return typeof v === 'string' && VERSION_RE.test(v);
}

/** Compares two "X.Y.Z" versions; throws CniError(1) for malformed ones. */
export function compareVersions(a: string, b: string): number {
  const pa = VERSION_RE.exec(a);
  const pb = VERSION_RE.exec(b);
  if (!pa || !pb) throw new CniError(CniCode.IncompatibleVersion, `invalid version "${pa ? b : a}"`);
  for (let i = 1; i <= 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d) return d;
  }
  return 0;
}

/** a >= b */
export function versionAtLeast(a: string, b: string): boolean {
  return compareVersions(a, b) >= 0;
}

/**
 * The version a runtime uses for a conflist (libcni): the highest of
 * `cniVersions` plus `cniVersion` that is not newer than `max`.
 */
export function negotiateListVersion(cniVersion: string | undefined, cniVersions: string[] | undefined, max = CURRENT_VERSION): string {
  const all = [...(cniVersions ?? []), ...(cniVersion ? [cniVersion] : [])];
  for (const v of all) if (!isVersion(v)) throw new CniError(CniCode.InvalidNetworkConfig, `invalid cniVersion "${v}": expected X.Y.Z`);
  const usable = all.filter((v) => compareVersions(v, max) <= 0).sort(compareVersions);
  if (!usable.length) {
    throw new CniError(CniCode.IncompatibleVersion, `no supported cniVersion in [${all.join(', ')}]: burrow supports up to ${max}`);
  }
  return usable[usable.length - 1];
}

type AnyResult = Result | Result040 | Result020;

/** Which shape a version uses. */
export function shapeOf(version: string): '020' | '040' | '100' {
  if (compareVersions(version, '0.3.0') < 0) return '020';
  if (compareVersions(version, '1.0.0') < 0) return '040';
  return '100';
}

function familyOf(cidr: string): 4 | 6 {
  return parseCidr(cidr).ip.family;
}

function routeFamily(dst: string): 4 | 6 {
  return parseCidr(dst).ip.family;
}

/** Reads a result of any version (given in its own `cniVersion`, else `fallback`) into the 1.1.0 shape. */
export function toCurrent(input: unknown, fallback = CURRENT_VERSION): Result {
  if (!input || typeof input !== 'object') throw new CniError(CniCode.DecodingFailure, 'result is not a JSON object');
  const r = input as Record<string, unknown>;
  const version = typeof r.cniVersion === 'string' && r.cniVersion ? r.cniVersion : fallback;
  if (!isVersion(version)) throw new CniError(CniCode.IncompatibleVersion, `result has invalid cniVersion "${version}"`);
  const shape = shapeOf(version);
  try {
    if (shape === '020') {
      const old = r as unknown as Result020;
      const out: Result = { cniVersion: CURRENT_VERSION, ips: [], routes: [] };
      for (const ipc of [old.ip4, old.ip6]) {
        if (!ipc) continue;
        out.ips!.push({ address: ipc.ip, ...(ipc.gateway ? { gateway: ipc.gateway } : {}) });
        for (const rt of ipc.routes ?? []) out.routes!.push({ dst: rt.dst, ...(rt.gw ? { gw: rt.gw } : {}) });
      }
      if (old.dns) out.dns = old.dns;
      return out;
    }
    const src = r as unknown as Result;
    const out: Result = { cniVersion: CURRENT_VERSION };
    if (Array.isArray(src.interfaces)) out.interfaces = src.interfaces.map((i) => ({ ...i }));
    if (Array.isArray(src.ips)) {
      out.ips = src.ips.map((ip) => {
        const { version: _v, ...rest } = ip as typeof ip & { version?: string };
        if (typeof rest.address !== 'string') throw new Error('ip without address');
        parseCidr(rest.address);
        return rest;
      });
    }
    if (Array.isArray(src.routes)) out.routes = src.routes.map((rt) => ({ ...rt }));
    if (src.dns && typeof src.dns === 'object') out.dns = src.dns;
    return out;
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `cannot decode ${version} result: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** Converts a 1.1.0-shaped result to `version`'s shape, labelled with `version`. */
export function fromCurrent(result: Result, version: string): AnyResult {
  const shape = shapeOf(version);
  if (shape === '100') {
    // Go's result types print "dns" always (omitempty does not apply to structs): so do we.
    const out: Result = { ...result, cniVersion: version, dns: result.dns ?? {} };
    if (compareVersions(version, '1.1.0') < 0) {
      // 1.0.0 has no interface mtu/socketPath/pciID and no route metrics.
      if (out.interfaces) out.interfaces = out.interfaces.map(({ name, mac, sandbox }) => ({ name, ...(mac !== undefined ? { mac } : {}), ...(sandbox !== undefined ? { sandbox } : {}) }));
      if (out.routes) out.routes = out.routes.map(({ dst, gw }) => ({ dst, ...(gw ? { gw } : {}) }));
    }
    return dropEmpty(out);
  }
  if (shape === '040') {
    const out: Result040 = { cniVersion: version };
    if (result.interfaces) out.interfaces = result.interfaces.map(({ name, mac, sandbox }) => ({ name, ...(mac !== undefined ? { mac } : {}), ...(sandbox !== undefined ? { sandbox } : {}) }));
    if (result.ips) out.ips = result.ips.map((ip) => ({ version: String(familyOf(ip.address)) as '4' | '6', ...ip }));
    if (result.routes) out.routes = result.routes.map(({ dst, gw }) => ({ dst, ...(gw ? { gw } : {}) }));
    out.dns = result.dns ?? {};
    return dropEmpty(out);
  }
  const out: Result020 = { cniVersion: version };
  for (const ip of result.ips ?? []) {
    const key = familyOf(ip.address) === 4 ? 'ip4' : 'ip6';
    if (!out[key]) out[key] = { ip: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}) } as Ip020;
  }
  if (!out.ip4 && !out.ip6) throw new CniError(CniCode.IncompatibleVersion, `cannot convert result to ${version}: no IP addresses`);
  for (const rt of result.routes ?? []) {
    const target = routeFamily(rt.dst) === 4 ? out.ip4 : out.ip6;
    if (target) (target.routes ??= []).push({ dst: rt.dst, ...(rt.gw ? { gw: rt.gw } : {}) });
  }
  out.dns = result.dns ?? {};
  return out;
}

function dropEmpty<T extends object>(r: T): T {
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return r;
}

/** Converts a result of any version to `version`. */
export function convertResult(input: unknown, version: string, fallback?: string): AnyResult {
  return fromCurrent(toCurrent(input, fallback), version);
}
