/**
 * CNI networks (rootful): ADD of each requested network into the held netns, in order (eth0,
 * eth1, ... unless interface_name= says otherwise), with the published ports (portmap) and the
 * static address and MAC on the networks that ask for them; the host ports are held by binding
 * them for the container's life, as podman does. DEL runs from the undo stack while our fd still
 * keeps the netns alive; `gcCni` DELs what a killed supervisor left (its netns may be gone).
 */
import type { PortSpec } from '../../net/ports/portspec.js';
import type { CniAttachment, ContainerRecord } from '../container/containers.js';
import type { NetworkRequest } from '../network/netspec.js';
import { readHostResolv, resolvConf, withNetworkDns } from './resolv.js';
import type { Attached, NetworkMode } from './types.js';

/** The part of the CNI runtime this mode uses (a fake in tests). */
export interface CniOps {
  add(list: unknown, rt: CniRuntimeConf): Promise<unknown>;
  del(list: unknown, rt: CniRuntimeConf): Promise<void>;
  /** The network's conflist, or a thrown error naming it. */
  get(network: string): unknown;
  /** Throws unless `ip` may be asked for on the network (in its subnets and ranges, not its gateway). */
  checkIp(list: unknown, ip: string): void;
  /** Binds the host ports for as long as the container runs; resolves to their release. */
  reservePorts(ports: PortSpec[]): Promise<() => void | Promise<void>>;
}

export interface CniRuntimeConf {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs (K8S_POD_NAME: the container's name, for dnsname). */
  args?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
}

interface AddResult {
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  dns?: { nameservers?: string[]; search?: string[] };
}

/** portMappings capability entries (one per port of a range). */
export function portMappings(specs: PortSpec[]): Array<Record<string, unknown>> {
  return specs.flatMap((s) => Array.from({ length: s.count }, (_, i) => ({ hostPort: s.hostPort + i, containerPort: s.guestPort + i, protocol: s.proto, ...(s.hostAddr ? { hostIP: s.hostAddr } : {}) })));
}

export function cniMode(ops: CniOps, requests: NetworkRequest[], readResolv: () => string = readHostResolv): NetworkMode {
  // an unknown network or an address it cannot give fails here, before anything starts
  const lists = requests.map((r) => ops.get(r.name));
  for (const [i, r] of requests.entries()) for (const ip of r.ips) ops.checkIp(lists[i], ip);
  return {
    kind: 'cni',
    ownNetns: true,
    holdable: true,
    initialRecord: () => ({ mode: 'cni', attachments: [] }),
    attach: async (c, held, undo): Promise<Attached> => {
      if (!held.netnsPath) throw new Error('a CNI attachment needs the container\'s netns');
      // a port in use fails here, before any rule exists, instead of having its traffic taken
      if (c.ports.length) {
        const release = await ops.reservePorts(c.ports);
        undo.push('release the reserved host ports', release);
        undo.hold((release as { fds?: number[] }).fds ?? []);
      }
      const attachments: CniAttachment[] = requests.map((r) => ({ network: r.name, netns: held.netnsPath!, ifname: r.ifname }));
      c.saveNetwork({ mode: 'cni', attachments });
      const ips: string[] = [];
      const networkDns = { nameservers: [] as string[], search: [] as string[] };
      let hostGateway: string | undefined;
      for (const [i, req] of requests.entries()) {
        const caps = { ...(c.ports.length && i === 0 ? { portMappings: portMappings(c.ports) } : {}), ...(req.ips.length ? { ips: req.ips } : {}), ...(req.mac ? { mac: req.mac } : {}), aliases: { [req.name]: req.aliases } };
        // as podman passes them: the name for dnsname, unknown keys ignored by the other plugins
        const rt: CniRuntimeConf = { containerId: c.id, netns: held.netnsPath, ifname: req.ifname, args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', c.name]], capabilityArgs: caps };
        // pushed before ADD: a failed ADD has rolled itself back, and its DEL is harmless
        undo.push(`CNI DEL of network "${req.name}" (${req.ifname})`, () => ops.del(lists[i], rt), attachments[i]);
        const result = (await ops.add(lists[i], rt)) as AddResult;
        const inside = (result.interfaces ?? []).find((x) => x.name === req.ifname && x.sandbox) ?? (result.interfaces ?? []).find((x) => x.sandbox);
        attachments[i].result = { ips: (result.ips ?? []).map((x) => ({ address: x.address, ...(x.gateway ? { gateway: x.gateway } : {}) })), ...(inside?.mac ? { mac: inside.mac } : {}) };
        ips.push(...(result.ips ?? []).map((x) => x.address.split('/')[0]));
        for (const n of result.dns?.nameservers ?? []) if (!networkDns.nameservers.includes(n)) networkDns.nameservers.push(n);
        for (const s of result.dns?.search ?? []) if (!networkDns.search.includes(s)) networkDns.search.push(s);
        // podman: host.containers.internal is the first bridge network's gateway
        hostGateway ??= (result.ips ?? []).find((x) => x.gateway && !x.address.includes(':'))?.gateway;
      }
      c.saveNetwork({ mode: 'cni', attachments });
      // --dns replaces every nameserver, the networks' too (their servers still answer for this container's name)
      const resolv = c.dns.length ? resolvConf(c.dns, '') : withNetworkDns(resolvConf([], readResolv()), networkDns);
      return { ips, resolv, extraHosts: [], hostGateway, networkDns };
    },
  };
}

/**
 * DELs `attachments` of container `id` (a killed supervisor's, or those whose DEL failed);
 * resolves to those that failed, with why. A network that no longer exists has nothing to delete.
 */
export async function gcCni(ops: Pick<CniOps, 'get' | 'del'>, id: string, attachments: CniAttachment[]): Promise<Array<{ attachment: CniAttachment; error: unknown }>> {
  const failed: Array<{ attachment: CniAttachment; error: unknown }> = [];
  for (const a of attachments) {
    let list;
    try {
      list = ops.get(a.network);
    } catch {
      continue;
    }
    try {
      await ops.del(list, { containerId: id, netns: a.netns, ifname: a.ifname });
    } catch (error) {
      failed.push({ attachment: a, error });
    }
  }
  return failed;
}

/** What a stale record of this mode still holds outside its state dir. */
export function pendingCni(r: ContainerRecord): CniAttachment[] {
  return r.network.mode === 'cni' ? r.network.attachments : [];
}
