/**
 * The bridge plugin: a Linux bridge on the host, a veth pair per attachment
 * (host end enslaved to the bridge, container end named CNI_IFNAME inside the
 * container's netns), addresses from the IPAM plugin, an optional gateway
 * address on the bridge, masquerading and a MAC spoof check.
 *
 * Theory of operation
 * -------------------
 * ADD builds the attachment step by step and pushes an undo action for each
 * step; any failure runs the undo stack in reverse, so a failed ADD leaves no
 * veth, no IPAM reservation, no rule and no bridge it created. The container
 * end is born in the container netns (no move), its IPv6 DAD is off unless
 * `enabledad`, and addresses are added with IFA_F_NODAD, so no ADD waits for
 * DAD to settle (the reference loses up to 2 s there, plugins#680).
 *
 * DEL releases the IPAM reservation first, then deletes the container end
 * (its peer dies with it) when the netns still exists, then removes the
 * masquerade rules by attachment name, which needs neither the netns nor the
 * addresses. Everything tolerates "already gone", so DEL is idempotent.
 *
 * CHECK compares the kernel with prevResult; STATUS and GC forward to IPAM,
 * and GC also removes masquerade rules of attachments that are not valid.
 * The kernel sits behind BridgeDeps, so the logic runs against fakes too.
 */
import fs from 'node:fs';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Interface, type IpConfig, type Result } from '../../net/cni/types.js';
import { masqBackend, type MasqBackend, type MasqTarget } from '../../net/firewall/ipmasq.js';
import { hasSpoofcheck, setupSpoofcheck, spoofRefId, teardownSpoofcheck } from '../../net/firewall/spoofcheck.js';
import { defaultGateway, formatCidr, formatIp, overlaps, parseCidr, parseIp, type Cidr, type Ip } from '../../net/ip/addr.js';
import type { NetlinkClient } from '../../net/netlink/client.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { ProcSysctl, type Sysctl } from '../../net/netlink/sysctl.js';
import { delegateIpam } from '../common.js';
import { configureIface, trySysctl, verifyIface } from '../ipconfig.js';
import { parseBridgeConf, type BridgeConf } from './config.js';
import { randomBytes } from '../../native/mod.js';

/** The kernel and the outside world, as the bridge plugin sees them. */
export interface BridgeDeps {
  netlink(netns: string): NetlinkClient;
  sysctl(netns: string): Sysctl;
  masq(backend?: string): MasqBackend;
  ipam(req: PluginRequest, type: string, command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC'): Promise<Result | undefined>;
  spoof: { setup(hostIface: string, mac: string, ref: string): Promise<void>; teardown(ref: string): Promise<boolean>; has(ref: string): Promise<boolean> };
  randomBytes(n: number): Buffer;
  netnsExists(path: string): boolean;
}

export const realBridgeDeps: BridgeDeps = {
  netlink: (netns) => new RtnlClient(netns),
  sysctl: (netns) => new ProcSysctl(netns),
  masq: (backend) => masqBackend(backend),
  ipam: (req, type, command) => delegateIpam(req, type, command),
  spoof: { setup: setupSpoofcheck, teardown: teardownSpoofcheck, has: hasSpoofcheck },
  randomBytes: (n) => randomBytes(n),
  netnsExists: (p) => {
    try {
      fs.statSync(p);
      return true;
    } catch {
      return false;
    }
  },
};

type Undo = () => Promise<unknown>;

function internal(msg: string): CniError {
  return new CniError(CniCode.Internal, msg);
}

/** The other masquerade backend, if its tool is installed (DEL tries it when the configured one found nothing). */
function otherMasq(deps: BridgeDeps, kind: string): MasqBackend | null {
  try {
    return deps.masq(kind === 'iptables' ? 'nftables' : 'iptables');
  } catch {
    return null;
  }
}

async function ensureBridge(host: NetlinkClient, conf: BridgeConf, undo: Undo[]): Promise<{ index: number; mac: string }> {
  let br = await host.getLink(conf.bridge);
  if (!br) {
    try {
      await host.addBridge(conf.bridge, { mtu: conf.mtu, vlanFiltering: conf.vlan !== 0 || conf.vlanTrunk.length > 0 });
      undo.push(async () => {
        const links = await host.listLinks();
        const b = links.find((l) => l.name === conf.bridge);
        if (b && !links.some((l) => l.master === b.index)) await host.removeLink(conf.bridge);
      });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err; // a concurrent ADD created it first
    }
    br = await host.getLink(conf.bridge);
    if (!br) throw internal(`bridge "${conf.bridge}" vanished right after it was created`);
    // Pin the bridge's own MAC now; otherwise it takes the lowest port MAC, which churns as ports come and go.
    if (br.kind === 'bridge') await host.setMac(conf.bridge, br.mac);
  }
  if (br.kind !== 'bridge') throw internal(`"${conf.bridge}" already exists but is not a bridge`);
  if (conf.promiscMode && !br.promisc) await host.setPromisc(conf.bridge, true);
  if (!br.up) await host.setUp(conf.bridge, true);
  return { index: br.index, mac: br.mac };
}

/** Creates the veth pair: host end vethXXXXXXXX in the host, container end CNI_IFNAME in the container netns. */
async function createVeth(deps: BridgeDeps, host: NetlinkClient, req: PluginRequest, conf: BridgeConf, undo: Undo[]): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const name = `veth${deps.randomBytes(4).toString('hex')}`;
    try {
      await host.addVeth(name, req.ifname, { peerNetns: req.netns, mtu: conf.mtu, peerMac: conf.mac });
      undo.push(() => host.removeLink(name));
      return name;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST' || attempt >= 9) throw err;
    }
  }
}

async function setupHostPort(host: NetlinkClient, conf: BridgeConf, hostVeth: string): Promise<void> {
  await host.setMaster(hostVeth, conf.bridge);
  if (conf.hairpinMode || conf.portIsolation) await host.setBridgePort(hostVeth, { hairpin: conf.hairpinMode || undefined, isolated: conf.portIsolation || undefined });
  if (conf.vlan) await host.bridgeVlanAdd(hostVeth, conf.vlan, { pvid: true, untagged: true });
  for (const t of conf.vlanTrunk) await host.bridgeVlanAdd(hostVeth, t.minID, { vidEnd: t.maxID });
  if (!conf.preserveDefaultVlan && (conf.vlan || conf.vlanTrunk.length)) await host.bridgeVlanDel(hostVeth, 1);
  await host.setUp(hostVeth, true);
}

/** Fills gateways (network+1 when IPAM gave none) and the default routes of isDefaultGateway. */
function planGateways(conf: BridgeConf, result: Result): Map<4 | 6, { gw: Ip; cidr: Cidr }> {
  const gws = new Map<4 | 6, { gw: Ip; cidr: Cidr }>();
  for (const ip of result.ips ?? []) {
    const c = parseCidr(ip.address);
    if (conf.isGateway && !ip.gateway) ip.gateway = formatIp(defaultGateway(c));
    if (ip.gateway && !gws.has(c.ip.family)) gws.set(c.ip.family, { gw: parseIp(ip.gateway), cidr: c });
  }
  if (conf.isDefaultGateway) {
    for (const [fam, { gw }] of gws) {
      const dst = fam === 4 ? '0.0.0.0/0' : '::/0';
      if (!(result.routes ?? []).some((r) => r.dst === dst && r.gw)) (result.routes ??= []).push({ dst, gw: formatIp(gw) });
    }
  }
  return gws;
}

async function configureContainer(deps: BridgeDeps, req: PluginRequest, conf: BridgeConf, result: Result, gws: Map<4 | 6, { gw: Ip }>): Promise<void> {
  const ctr = deps.netlink(req.netns);
  try {
    const s = deps.sysctl(req.netns);
    if (!conf.enabledad) {
      trySysctl(s, `net/ipv6/conf/${req.ifname}/enhanced_dad`, '0');
      trySysctl(s, `net/ipv6/conf/${req.ifname}/accept_dad`, '0');
    }
    trySysctl(s, `net/ipv4/conf/${req.ifname}/arp_notify`, '1');
    const gateways = new Map([...gws].map(([fam, g]) => [fam, g.gw] as [4 | 6, Ip]));
    await configureIface(ctr, s, req.ifname, result, { noDad: !conf.enabledad, leaveDown: conf.disableContainerInterface, gateways });
  } finally {
    ctr.close();
  }
}

/** Puts gw/prefix on the bridge (reference ensureAddr), pins the bridge MAC, enables forwarding. */
async function ensureGatewayAddr(deps: BridgeDeps, host: NetlinkClient, dev: string, conf: BridgeConf, fam: 4 | 6, gw: Ip, cidr: Cidr): Promise<void> {
  const want: Cidr = { ip: gw, prefixLen: cidr.prefixLen };
  const wantText = formatCidr(want);
  for (const a of await host.listAddresses(dev)) {
    if (a.family !== fam) continue;
    if (a.cidr === wantText) return;
    const have = parseCidr(a.cidr);
    if (fam === 4 || overlaps(have, want)) {
      if (!conf.forceAddress) throw internal(`"${dev}" already has an IP address different from ${wantText}`);
      await host.removeAddress(dev, a.cidr);
    }
  }
  try {
    await host.addAddress(dev, wantText, { noDad: true });
  } catch (err) {
    if ((err as { code?: string }).code !== 'EEXIST') throw err;
  }
  const link = await host.getLink(dev);
  if (link) await host.setMac(dev, link.mac); // otherwise the bridge takes the lowest port MAC, which churns
  const s = deps.sysctl('');
  if (fam === 4) trySysctl(s, 'net/ipv4/ip_forward', '1');
  else trySysctl(s, 'net/ipv6/conf/all/forwarding', '1');
}

/** With a VLAN and a gateway, the gateway lives on a veth "<bridge>.<vlan>" whose peer is a tagged bridge port (as the reference). */
async function ensureVlanGatewayIface(deps: BridgeDeps, host: NetlinkClient, conf: BridgeConf): Promise<string> {
  const name = `${conf.bridge}.${conf.vlan}`;
  if (name.length > 15) throw internal(`VLAN gateway interface name "${name}" is longer than 15 characters: use a shorter bridge name`);
  if (await host.getLink(name)) return name;
  const peer = `veth${deps.randomBytes(4).toString('hex')}`;
  try {
    await host.addVeth(name, peer, { mtu: conf.mtu });
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return name;
    throw err;
  }
  await host.setMaster(peer, conf.bridge);
  await host.bridgeVlanAdd(peer, conf.vlan, { pvid: true, untagged: true });
  if (!conf.preserveDefaultVlan) await host.bridgeVlanDel(peer, 1);
  await host.setUp(peer, true);
  await host.setUp(name, true);
  return name;
}

function masqTarget(conf: BridgeConf, req: PluginRequest): MasqTarget {
  return { network: conf.network, ifname: req.ifname, containerId: req.containerId };
}

async function runUndo(undo: Undo[]): Promise<void> {
  for (const u of undo.reverse()) {
    try {
      await u();
    } catch {
      // best effort: the original error is the one to report
    }
  }
}

export function makeBridge(deps: BridgeDeps = realBridgeDeps): CniPlugin {
  return {
    name: 'bridge',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],

    async add(req) {
      const conf = parseBridgeConf(req);
      if (!deps.netnsExists(req.netns)) throw new CniError(CniCode.UnknownContainer, `failed to open netns "${req.netns}": no such file`);
      const undo: Undo[] = [];
      const host = deps.netlink('');
      try {
        const br = await ensureBridge(host, conf, undo);
        const ctrProbe = deps.netlink(req.netns);
        try {
          if (await ctrProbe.getLink(req.ifname)) throw internal(`container veth name provided (${req.ifname}) already exists`);
        } finally {
          ctrProbe.close();
        }
        const hostVeth = await createVeth(deps, host, req, conf, undo);
        await setupHostPort(host, conf, hostVeth);
        const result: Result = { cniVersion: '1.1.0', interfaces: [], ips: [], routes: [], dns: {} };
        if (conf.ipam) {
          const ipamType = conf.ipam;
          const ipamResult = await deps.ipam(req, ipamType, 'ADD');
          undo.push(() => deps.ipam(req, ipamType, 'DEL'));
          if (!ipamResult?.ips?.length) throw internal('IPAM plugin returned missing IP config');
          result.ips = ipamResult.ips.map((ip) => ({ address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), interface: 2 }));
          result.routes = (ipamResult.routes ?? []).map((r) => ({ ...r }));
          result.dns = ipamResult.dns ?? {};
        }
        const gws = planGateways(conf, result);
        await configureContainer(deps, req, conf, result, gws);
        if (conf.isGateway) {
          const gwDev = conf.vlan ? await ensureVlanGatewayIface(deps, host, conf) : conf.bridge;
          for (const [fam, { gw, cidr }] of gws) await ensureGatewayAddr(deps, host, gwDev, conf, fam, gw, cidr);
        }
        if (conf.ipMasq && result.ips!.length) {
          const masq = deps.masq(conf.ipMasqBackend);
          const target = masqTarget(conf, req);
          undo.push(() => masq.teardown(target, []));
          await masq.setup(target, result.ips!.map((i) => parseCidr(i.address)));
        }
        const ctr = deps.netlink(req.netns);
        let ctrLink;
        try {
          ctrLink = await ctr.getLink(req.ifname);
        } finally {
          ctr.close();
        }
        if (!ctrLink) throw internal(`container interface "${req.ifname}" vanished during setup`);
        if (conf.macspoofchk) {
          const ref = spoofRefId(req.containerId, req.ifname);
          undo.push(() => deps.spoof.teardown(ref));
          await deps.spoof.setup(hostVeth, ctrLink.mac, ref);
        }
        const hostLink = await host.getLink(hostVeth);
        const brLink = await host.getLink(conf.bridge);
        const interfaces: Interface[] = [
          { name: conf.bridge, mac: brLink?.mac ?? br.mac },
          { name: hostVeth, mac: hostLink?.mac ?? '' },
          { name: req.ifname, mac: ctrLink.mac, sandbox: req.netns },
        ];
        result.interfaces = interfaces;
        if (!result.routes!.length) delete result.routes;
        if (conf.dns) result.dns = conf.dns;
        if (!conf.ipam) delete result.ips;
        return result;
      } catch (err) {
        await runUndo(undo);
        throw err instanceof CniError ? err : internal((err as Error).message);
      } finally {
        host.close();
      }
    },

    async del(req) {
      const conf = parseBridgeConf(req);
      const errors: string[] = [];
      if (conf.ipam) {
        try {
          await deps.ipam(req, conf.ipam, 'DEL');
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (req.netns && deps.netnsExists(req.netns)) {
        try {
          const ctr = deps.netlink(req.netns);
          try {
            await ctr.removeLink(req.ifname);
          } finally {
            ctr.close();
          }
        } catch (err) {
          // A netns that disappeared between the check and the open is fine too.
          if (deps.netnsExists(req.netns)) errors.push((err as Error).message);
        }
      }
      if (conf.ipMasq) {
        try {
          const masq = deps.masq(conf.ipMasqBackend);
          const target = masqTarget(conf, req);
          const ips = (req.prevResult?.ips ?? []).map((i) => parseCidr(i.address));
          // Rules may come from another backend (another version or config wrote them): try both.
          if (!(await masq.teardown(target, ips)) && !conf.ipMasqBackend) await otherMasq(deps, masq.kind)?.teardown(target, ips);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (conf.macspoofchk) {
        try {
          await deps.spoof.teardown(spoofRefId(req.containerId, req.ifname));
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (errors.length) throw internal(errors.join('; '));
    },

    async check(req) {
      const conf = parseBridgeConf(req);
      const prev = req.prevResult;
      if (!prev) throw new CniError(CniCode.InvalidNetworkConfig, 'Required prevResult missing');
      await checkAttachment(deps, req, conf, prev);
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'CHECK');
    },

    async status(req) {
      const conf = parseBridgeConf(req);
      if (conf.ipam) await deps.ipam(req, conf.ipam, 'STATUS');
    },

    async gc(req) {
      const conf = parseBridgeConf(req);
      const valid = req.validAttachments ?? [];
      const errors: string[] = [];
      for (const kind of ['iptables', 'nftables']) {
        let masq: MasqBackend;
        try {
          masq = deps.masq(kind);
        } catch {
          continue; // tool not installed: nothing of that kind to collect
        }
        try {
          await masq.gc(conf.network, valid);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (conf.ipam) {
        try {
          await deps.ipam(req, conf.ipam, 'GC');
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (errors.length) throw internal(errors.join('; '));
    },
  };
}

/** CHECK: the kernel state against prevResult. */
async function checkAttachment(deps: BridgeDeps, req: PluginRequest, conf: BridgeConf, prev: Result): Promise<void> {
  const host = deps.netlink('');
  const ctr = deps.netlink(req.netns);
  try {
    const br = await host.getLink(conf.bridge);
    if (!br || br.kind !== 'bridge') throw internal(`bridge "${conf.bridge}" does not exist or is not a bridge`);
    const ifaces = prev.interfaces ?? [];
    const ctrIface = ifaces.find((i) => i.name === req.ifname && i.sandbox);
    if (!ctrIface) throw internal(`prevResult has no interface "${req.ifname}" with a sandbox`);
    const link = await ctr.getLink(req.ifname);
    if (!link) throw internal(`container interface "${req.ifname}" not found in netns "${req.netns}"`);
    if (link.kind !== 'veth') throw internal(`container interface "${req.ifname}" is a ${link.kind || 'device'}, not a veth`);
    if (ctrIface.mac && link.mac !== ctrIface.mac.toLowerCase()) throw internal(`interface "${req.ifname}" has MAC ${link.mac}, expected ${ctrIface.mac}`);
    const hostIface = ifaces.find((i) => !i.sandbox && i.name !== conf.bridge);
    if (hostIface) {
      const hv = await host.getLink(hostIface.name);
      if (!hv) throw internal(`host veth "${hostIface.name}" not found`);
      if (hv.master !== br.index) throw internal(`host veth "${hostIface.name}" is not attached to bridge "${conf.bridge}"`);
      if (link.parentIndex !== undefined && link.parentIndex !== hv.index) throw internal(`"${req.ifname}" is not the peer of host veth "${hostIface.name}"`);
    }
    await verifyIface(ctr, req.ifname, req.netns, prev, ifaces.indexOf(ctrIface));
    if (conf.ipMasq) {
      const ips = (prev.ips ?? []).map((i: IpConfig) => parseCidr(i.address));
      if (!(await deps.masq(conf.ipMasqBackend).has(masqTarget(conf, req), ips))) throw internal(`masquerade rules of "${req.containerId}" are missing`);
    }
    if (conf.macspoofchk && !(await deps.spoof.has(spoofRefId(req.containerId, req.ifname)))) throw internal(`MAC spoof check of "${req.containerId}" is missing`);
  } finally {
    host.close();
    ctr.close();
  }
}

export const bridge = makeBridge();

