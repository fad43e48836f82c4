/**
 * firewall (chained, spec >= 0.4.0): accepts forwarded traffic of the
 * attachment's addresses, with the reference's admin chain and ingressPolicy
 * (open, same-bridge, isolated), on iptables (the reference's rule text) or
 * nftables (which the reference lacks). See net/firewall/forward.ts.
 */
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import { firewallBackend, type FirewallOptions, type FirewallTarget, type IngressPolicy } from '../../net/firewall/forward.js';
import { onPath, pickBackend } from '../../net/firewall/run.js';
import { parseCidr, type Cidr } from '../../net/ip/addr.js';
import { validIfname } from '../../net/netlink/client.js';
import { configError, optString } from '../common.js';

interface FirewallConf {
  backend: 'iptables' | 'nftables';
  explicit: boolean;
  options: FirewallOptions;
}

/** `del`: DEL must work without prevResult (a lost cache entry): the bridge is then unknown. */
function parseConf(req: PluginRequest, o: { del?: boolean } = {}): FirewallConf {
  const c = req.config;
  const backend = optString(c, 'backend');
  if (backend === 'firewalld') throw configError('the firewalld backend is not supported by burrow\'s firewall plugin: use "iptables", "nftables" or leave "backend" empty');
  if (backend !== undefined && backend !== 'iptables' && backend !== 'nftables') throw configError(`invalid "backend" "${backend}": expected "iptables" or "nftables"`);
  const adminChain = optString(c, 'iptablesAdminChainName') ?? 'CNI-ADMIN';
  if (!/^[A-Za-z0-9_.-]{1,28}$/.test(adminChain)) throw configError(`invalid "iptablesAdminChainName" "${adminChain}"`);
  const policy = (optString(c, 'ingressPolicy') ?? 'open') as IngressPolicy;
  if (!['open', 'same-bridge', 'isolated'].includes(policy)) throw configError(`invalid "ingressPolicy" "${policy}": expected "open", "same-bridge" or "isolated"`);
  const bridge = req.prevResult?.interfaces?.[0]?.name;
  if (policy !== 'open' && !o.del && (!bridge || !validIfname(bridge))) throw configError(`ingressPolicy "${policy}" needs the bridge as the first interface of prevResult`);
  return { backend: pickBackend(backend, 'the firewall plugin'), explicit: !!backend, options: { adminChain, ingressPolicy: policy, bridge: bridge && validIfname(bridge) ? bridge : undefined } };
}

function addresses(prev: Result | undefined): Cidr[] {
  return (prev?.ips ?? []).map((i) => parseCidr(i.address));
}

function target(req: PluginRequest): FirewallTarget {
  return { network: String(req.config.name ?? ''), containerId: req.containerId, ifname: req.ifname };
}

function asCni(err: unknown): CniError {
  return err instanceof CniError ? err : new CniError(CniCode.Internal, (err as Error).message);
}

export const firewall: CniPlugin = {
  name: 'firewall',
  supportedVersions: ['0.4.0', '1.0.0', '1.1.0'],

  async add(req) {
    if (!req.prevResult) throw new CniError(CniCode.InvalidNetworkConfig, 'missing prevResult from earlier plugin');
    const conf = parseConf(req);
    const ips = addresses(req.prevResult);
    const fw = firewallBackend(conf.backend);
    try {
      if (ips.length || conf.options.ingressPolicy !== 'open') await fw.setup(target(req), ips, conf.options);
    } catch (err) {
      await fw.teardown(target(req), ips, conf.options).catch(() => undefined);
      throw asCni(err);
    }
    return req.prevResult;
  },

  async del(req) {
    const conf = parseConf(req, { del: true });
    const ips = addresses(req.prevResult);
    try {
      const fw = firewallBackend(conf.backend);
      const removed = await fw.teardown(target(req), ips, conf.options);
      if (!removed && !conf.explicit) {
        const other = conf.backend === 'iptables' ? 'nftables' : 'iptables';
        if (onPath(other === 'iptables' ? 'iptables-restore' : 'nft')) await firewallBackend(other).teardown(target(req), ips, conf.options);
      }
    } catch (err) {
      throw asCni(err);
    }
  },

  async check(req) {
    if (!req.prevResult) throw new CniError(CniCode.InvalidNetworkConfig, 'missing prevResult from earlier plugin');
    const conf = parseConf(req);
    const ips = addresses(req.prevResult);
    if (ips.length && !(await firewallBackend(conf.backend).has(target(req), ips, conf.options))) {
      throw new CniError(CniCode.Internal, `forwarding rules of "${req.containerId}" are missing`);
    }
  },

  async status() {},

  async gc(req) {
    const conf = parseConf(req);
    const valid = new Set((req.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
    try {
      await firewallBackend(conf.backend).gc(String(req.config.name ?? ''), valid, conf.options);
    } catch (err) {
      throw asCni(err);
    }
  },
};
