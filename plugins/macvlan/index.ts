/**
 * macvlan: gives the container an interface of its own on a parent link (the
 * host's default-route interface unless `master` says otherwise), in mode
 * bridge, private, vepa or passthru, with addresses from the IPAM plugin.
 *
 * ADD creates the link directly inside the container netns under a temporary
 * name and renames it to CNI_IFNAME there (the reference's workaround for name
 * collisions), then IPAM, sysctls (arp_notify, ndisc_notify) and addresses;
 * any failure deletes the link and releases the reservation. DEL releases
 * IPAM first, then deletes the link; a missing netns or link is success.
 */
import fs from 'node:fs';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Dns, type Result } from '../../net/cni/types.js';
import { parseCidr } from '../../net/ip/addr.js';
import { parseMac, type IpvlanMode, type MacvlanMode, type NetlinkClient } from '../../net/netlink/client.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { ProcSysctl, type Sysctl } from '../../net/netlink/sysctl.js';
import { digestHex, randomBytes, withNetnsLock } from '../../native/mod.js';
import { configError, delegateIpam, ipamType, loadArgs, optBool, optInt, optString } from '../common.js';
import { configureIface, gatewaysOf, trySysctl, verifyIface } from '../ipconfig.js';

/** The two kinds of sub-interface this module serves: macvlan and ipvlan (same lifecycle). */
export type SubKind = 'macvlan' | 'ipvlan';

const MODES: Record<SubKind, string[]> = { macvlan: ['bridge', 'private', 'vepa', 'passthru'], ipvlan: ['l2', 'l3', 'l3s'] };
const DEFAULT_MODE: Record<SubKind, string> = { macvlan: 'bridge', ipvlan: 'l2' };

export interface MacvlanConf {
  network: string;
  hostShim: boolean;
  master?: string;
  kind: SubKind;
  mode: string;
  mtu?: number;
  mac?: string;
  linkInContainer: boolean;
  ipam: string | null;
  dns?: Dns;
}

export interface MacvlanDeps {
  netlink(netns: string): NetlinkClient;
  sysctl(netns: string): Sysctl;
  ipam(req: PluginRequest, type: string, command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC'): Promise<Result | undefined>;
  netnsExists(path: string): boolean;
}

const realDeps: MacvlanDeps = {
  netlink: (n) => new RtnlClient(n),
  sysctl: (n) => new ProcSysctl(n),
  ipam: (req, type, command) => delegateIpam(req, type, command),
  netnsExists: (p) => fs.existsSync(p),
};

type Obj = Record<string, unknown>;

export function parseMacvlanConf(req: PluginRequest, kind: SubKind = 'macvlan'): MacvlanConf {
  const c = req.config;
  const mode = optString(c, 'mode') ?? DEFAULT_MODE[kind];
  if (!MODES[kind].includes(mode)) throw configError(`unknown ${kind} mode: "${mode}" (expected ${MODES[kind].join(', ')})`);
  if (kind === 'ipvlan' && (optString(c, 'mac') || optBool(c, 'hostShim'))) throw configError('ipvlan interfaces share the parent\'s MAC and have no host shim: drop "mac"/"hostShim"');
  const rc = (c.runtimeConfig ?? {}) as Obj;
  const cniArgs = ((c.args as Obj | undefined)?.cni ?? {}) as Obj;
  const mac = (rc.mac ?? cniArgs.mac ?? loadArgs(req, ['MAC', 'IP']).get('MAC') ?? optString(c, 'mac')) as unknown;
  if (mac !== undefined && mac !== '') {
    try {
      parseMac(String(mac));
    } catch {
      throw configError(`invalid MAC address "${String(mac)}"`);
    }
  }
  const dns = c.dns && typeof c.dns === 'object' && Object.keys(c.dns as Obj).length ? (c.dns as Dns) : undefined;
  const hostShim = optBool(c, 'hostShim');
  if (hostShim && optBool(c, 'linkInContainer')) throw configError('"hostShim" needs the parent on the host: it cannot be combined with "linkInContainer"');
  return {
    kind,
    network: String(c.name ?? ''),
    hostShim,
    master: optString(c, 'master'),
    mode,
    mtu: optInt(c, 'mtu', 0, 65535) || undefined,
    mac: mac ? String(mac).toLowerCase() : undefined,
    linkInContainer: optBool(c, 'linkInContainer'),
    ipam: ipamType(c),
    dns,
  };
}

/** The interface of the default route (IPv4 first), as the reference picks the default master. */
async function defaultRouteIface(nl: NetlinkClient): Promise<string> {
  for (const fam of [4, 6] as const) {
    const r = (await nl.listRoutes(fam)).find((x) => x.dst === 'default' && x.dev);
    if (r?.dev) return r.dev;
  }
  throw new CniError(CniCode.InvalidNetworkConfig, 'no "master" given and no default route to take it from');
}

function internal(msg: string): CniError {
  return new CniError(CniCode.Internal, msg);
}

export function makeMacvlan(deps: MacvlanDeps = realDeps, kind: SubKind = 'macvlan'): CniPlugin {
  const parse = (req: PluginRequest) => parseMacvlanConf(req, kind);
  return {
    name: kind,
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],

    async add(req) {
      const conf = parse(req);
      if (!deps.netnsExists(req.netns)) throw new CniError(CniCode.UnknownContainer, `failed to open netns "${req.netns}": no such file`);
      const ctr = deps.netlink(req.netns);
      const parentNl = conf.linkInContainer ? ctr : deps.netlink('');
      let created = false;
      let reserved = false;
      try {
        const master = conf.master ?? (await defaultRouteIface(parentNl));
        const parent = await parentNl.getLink(master);
        if (!parent) throw internal(`failed to lookup master "${master}"${conf.linkInContainer ? ` in netns "${req.netns}"` : ''}: Link not found`);
        if (parent.kind === 'macvlan' && parent.mode === 'passthru') throw internal(`master "${master}" is itself a macvlan in passthru mode: it cannot be a parent`);
        if (conf.mtu !== undefined && conf.mtu > parent.mtu) throw internal(`invalid MTU ${conf.mtu}, must be [0, master MTU(${parent.mtu})]`);
        if (await ctr.getLink(req.ifname)) throw internal(`interface "${req.ifname}" already exists in netns "${req.netns}"`);
        const tmp = `veth${randomBytes(4).toString('hex')}`;
        const where = { netns: conf.linkInContainer ? undefined : req.netns, mtu: conf.mtu, mac: conf.mac };
        if (kind === 'macvlan') await parentNl.addMacvlan(tmp, master, conf.mode as MacvlanMode, where);
        else await parentNl.addIpvlan(tmp, master, conf.mode as IpvlanMode, { ...where, mac: undefined });
        created = true;
        await ctr.rename(tmp, req.ifname);
        const result: Result = { cniVersion: '1.1.0', interfaces: [], dns: {} };
        if (conf.ipam) {
          const ipamResult = await deps.ipam(req, conf.ipam, 'ADD');
          reserved = true;
          if (!ipamResult?.ips?.length) throw internal('IPAM plugin returned missing IP config');
          result.ips = ipamResult.ips.map((ip) => ({ ...ip, interface: 0 }));
          if (ipamResult.routes?.length) result.routes = ipamResult.routes;
          result.dns = ipamResult.dns ?? {};
          const s = deps.sysctl(req.netns);
          trySysctl(s, `net/ipv4/conf/${req.ifname}/arp_notify`, '1');
          trySysctl(s, `net/ipv6/conf/${req.ifname}/ndisc_notify`, '1');
          await configureIface(ctr, s, req.ifname, result, { noDad: false, gateways: gatewaysOf(result) });
        } else {
          await ctr.setUp(req.ifname, true);
        }
        if (conf.hostShim && conf.ipam) await attachHostShim(deps, req, conf, master, result);
        const link = await ctr.getLink(req.ifname);
        result.interfaces = [{ name: req.ifname, mac: link?.mac ?? '', sandbox: req.netns }];
        if (conf.dns) result.dns = conf.dns;
        return result;
      } catch (err) {
        if (reserved && conf.ipam) await deps.ipam(req, conf.ipam, 'DEL').catch(() => undefined);
        if (created) await ctr.removeLink(req.ifname).catch(() => false);
        throw err instanceof CniError ? err : internal((err as Error).message);
      } finally {
        ctr.close();
        if (parentNl !== ctr) parentNl.close();
      }
    },

    async del(req) {
      const conf = parse(req);
      if (conf.hostShim) await detachHostShim(deps, conf, req.prevResult);
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'DEL');
      if (!req.netns || !deps.netnsExists(req.netns)) return;
      const ctr = deps.netlink(req.netns);
      try {
        await ctr.removeLink(req.ifname);
      } finally {
        ctr.close();
      }
    },

    async check(req) {
      const conf = parse(req);
      const prev = req.prevResult;
      if (!prev) throw new CniError(CniCode.InvalidNetworkConfig, 'Required prevResult missing');
      const ctr = deps.netlink(req.netns);
      try {
        const link = await ctr.getLink(req.ifname);
        if (!link) throw internal(`interface "${req.ifname}" not found in netns "${req.netns}"`);
        if (link.kind !== kind) throw internal(`interface "${req.ifname}" is a ${link.kind || 'device'}, not a ${kind}`);
        if (link.mode !== conf.mode) throw internal(`interface "${req.ifname}" is in mode ${link.mode}, expected ${conf.mode}`);
        await verifyIface(ctr, req.ifname, req.netns, prev, 0);
      } finally {
        ctr.close();
      }
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'CHECK');
    },

    async status(req) {
      const conf = parse(req);
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'STATUS');
    },

    async gc(req) {
      const conf = parse(req);
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'GC');
    },
  };
}

/** The host shim's interface name for a network ("bs" + 10 hex of its name's hash). */
export function hostShimName(network: string): string {
  return `bs${digestHex('sha256', network).slice(0, 10)}`;
}

/** The IPAM owner of the shim's address (released by `burrow network rm`). */
export const HOST_SHIM_ID = 'burrow-host-shim';

/**
 * Host shim (beyond the reference; moby/libnetwork#1915): a macvlan in bridge mode on the same
 * parent, in the host, with an address reserved from the network's own IPAM as a /32, and one
 * /32 host route per container through it. The parent cannot talk to its macvlan children; a
 * sibling macvlan can. Created once per network under a lock; routes are per attachment.
 */
async function attachHostShim(deps: MacvlanDeps, req: PluginRequest, conf: MacvlanConf, master: string, result: Result): Promise<void> {
  const name = hostShimName(conf.network);
  const host = deps.netlink('');
  try {
    await withNetnsLock(async () => {
      if (!(await host.getLink(name))) {
        const shimReq: PluginRequest = { ...req, containerId: HOST_SHIM_ID, ifname: name, args: [], config: { ...req.config, runtimeConfig: undefined, args: undefined } };
        const res = await deps.ipam(shimReq, conf.ipam!, 'ADD');
        const v4 = res?.ips?.find((i) => !i.address.includes(':')) ?? res?.ips?.[0];
        if (!v4) throw internal('IPAM gave the host shim no address');
        try {
          await host.addMacvlan(name, master, 'bridge', {});
          const ip = parseCidr(v4.address);
          await host.addAddress(name, `${v4.address.split('/')[0]}/${ip.ip.family === 4 ? 32 : 128}`, { noDad: true });
          await host.setUp(name, true);
        } catch (err) {
          await host.removeLink(name).catch(() => false);
          await deps.ipam(shimReq, conf.ipam!, 'DEL').catch(() => undefined);
          throw err;
        }
      }
    });
    for (const ip of result.ips ?? []) {
      const c = parseCidr(ip.address);
      await host.replaceRoute({ dst: `${ip.address.split('/')[0]}/${c.ip.family === 4 ? 32 : 128}`, dev: name });
    }
  } finally {
    host.close();
  }
}

async function detachHostShim(deps: MacvlanDeps, conf: MacvlanConf, prev: Result | undefined): Promise<void> {
  const name = hostShimName(conf.network);
  const host = deps.netlink('');
  try {
    for (const ip of prev?.ips ?? []) {
      const c = parseCidr(ip.address);
      await host.removeRoute({ dst: `${ip.address.split('/')[0]}/${c.ip.family === 4 ? 32 : 128}`, dev: name });
    }
  } finally {
    host.close();
  }
}

export const macvlan = makeMacvlan();
