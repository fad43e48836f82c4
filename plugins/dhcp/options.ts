/**
 * The dhcp netconf's options as the reference reads them (plugins/ipam/dhcp/options.go,
 * lease.go prepareOptions), and the Result it returns (daemon.go Allocate).
 *
 * `ipam.request`: [{option, skipDefault}]: codes for option 55; the default [3 routers, 1
 * subnet mask] is kept unless an entry has skipDefault. `ipam.provide`: [{option, value} or
 * {option, fromArg}]: options sent to the server, fromArg naming a CNI_ARGS key (it wins).
 * Option names: dhcp-client-identifier, subnet-mask, routers, host-name, user-class,
 * vendor-class-identifier, or a decimal code.
 */
import { formatCidr, parseCidr } from '../../net/ip/addr.js';
import type { Lease } from '../../net/wire/dhcp_client.js';
import * as ipv4 from '../../net/wire/ipv4.js';

const NAMES: Record<string, number> = { 'dhcp-client-identifier': 61, 'subnet-mask': 1, routers: 3, 'host-name': 12, 'user-class': 77, 'vendor-class-identifier': 60 };

export class OptionError extends Error {}

function code(v: unknown, where: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 255) return v;
  if (typeof v === 'string') {
    if (NAMES[v]) return NAMES[v];
    if (/^\d+$/.test(v) && Number(v) > 0 && Number(v) < 255) return Number(v);
  }
  throw new OptionError(`${where}: unknown DHCP option ${JSON.stringify(v)} (a name such as host-name, or a code 1-254)`);
}

/** CNI_ARGS as the reference splits them: `;` between pairs, `=` inside. */
function argsMap(args: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of args.split(';')) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

export function leaseOptionsOf(conf: Record<string, unknown>, cniArgs: string, clientId: string): { clientId: Buffer; paramRequest: number[]; provide: Array<[number, Buffer]> } {
  const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
  const request = Array.isArray(ipam.request) ? (ipam.request as Array<Record<string, unknown>>) : [];
  const provide = Array.isArray(ipam.provide) ? (ipam.provide as Array<Record<string, unknown>>) : [];
  const skipDefault = request.some((r) => r && r.skipDefault === true);
  const params = skipDefault ? [] : [3, 1];
  for (const [i, r] of request.entries()) {
    const c = code(r?.option, `ipam.request[${i}]`);
    if (!params.includes(c)) params.push(c);
  }
  const args = argsMap(cniArgs);
  const out: Array<[number, Buffer]> = [];
  for (const [i, p] of provide.entries()) {
    const c = code(p?.option, `ipam.provide[${i}]`);
    const fromArg = typeof p?.fromArg === 'string' ? args.get(p.fromArg) : undefined;
    const value = fromArg ?? (typeof p?.value === 'string' ? p.value : undefined);
    if (value === undefined) continue;
    const b = Buffer.from(value, 'utf8');
    if (b.length > 255) throw new OptionError(`ipam.provide[${i}]: the value of option ${c} is longer than 255 bytes`);
    out.push([c, b]);
  }
  return { clientId: Buffer.concat([Buffer.of(0), Buffer.from(clientId, 'latin1')]).subarray(0, 255), paramRequest: params, provide: out };
}

const maskOf = (prefix: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(prefix ? (0xffffffff << (32 - prefix)) >>> 0 : 0);
  return b;
};

/** The Result the reference's Allocate returns: one address, its gateway, the routes; no DNS, no interfaces. */
export function resultOf(l: Lease): unknown {
  return {
    IPs: [{ Address: { IP: ipv4.parseAddr(l.address), Mask: maskOf(l.prefix) }, Gateway: l.gateway ? ipv4.parseAddr(l.gateway) : undefined }],
    Routes: l.routes.map((r) => {
      const c = parseCidr(r.dst);
      const [addr, len] = formatCidr(c).split('/');
      return { Dst: { IP: ipv4.parseAddr(addr), Mask: maskOf(Number(len)) }, GW: r.gw ? ipv4.parseAddr(r.gw) : undefined };
    }),
    DNS: {},
  };
}
