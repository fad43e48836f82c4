/**
 * A rootless container on one of the user's own networks: the container's namespaces are made
 * inside the user's network namespace (its user namespace owns them), and burrow's CNI runtime
 * and plugins run there as its root, with real veths, a real bridge and real netfilter rules, as
 * rootful. Containers of the user's networks reach each other at kernel speed. The namespace is
 * made on first use and removed with the last container that needs it.
 */
import { processLive } from '../../native/system.js';
import type { BurrowConfig } from '../config.js';
import { ContainerError, ContainerStore } from '../container/containers.js';
import type { NetworkRequest } from '../network/netspec.js';
import { formatPortSpec, parseRecordedPorts, type PortSpec } from '../../net/ports/portspec.js';
import { callApi } from '../../net/usernet/api.js';
import { insideCni } from '../network/cni_server.js';
import { collectUserNetns, ensureUserNetns, stackSocket, USER_NETNS_DNS, type UserNetns } from '../network/user_netns.js';
import { cniMode, type CniOps } from './cni.js';
import { withNetworkDns } from './resolv.js';
import type { NetworkMode } from './types.js';

/** Whether a container of this state dir other than `except` still runs on a user network. */
export function userNetnsNeeded(stateDir: string, except?: string): boolean {
  return new ContainerStore(stateDir).list().some((r) => r.id !== except && r.network.mode === 'cni' && r.network.userNetns && r.state === 'running' && ContainerStore.alive(r));
}

/**
 * The stack forwards a published port to the same port of the namespace's own address
 * (10.0.2.100; the client's address kept, loopback clients spliced); portmap's DNAT there takes it
 * on to the container, as on the host when rootful.
 */
const stackSpec = (p: PortSpec) => formatPortSpec({ ...p, guestPort: p.hostPort });

/** The stack's forwards for every running container of the user's networks (a new stack gets them again). */
function forwardsOf(stateDir: string): string[] {
  const running = new ContainerStore(stateDir).list().filter((r) => r.network.mode === 'cni' && r.network.userNetns && r.state === 'running' && ContainerStore.alive(r));
  return running.flatMap((r) => parseRecordedPorts(r.ports).map(stackSpec));
}

/** The user's network namespace, made or mended (a stack killed on its own is started again with the ports of the running containers). */
export function userNetns(config: BurrowConfig): ReturnType<typeof ensureUserNetns> {
  return ensureUserNetns(config.stateDir, { forwards: () => forwardsOf(config.stateDir) });
}

/**
 * Removes the stack's forwards of `ports`, found by protocol, address and host port rather than
 * by the ids the stack gave: a stack started again after a kill -9 forwards them under new ids.
 * Also what `system gc` does for a container whose supervisor was killed.
 */
export async function unpublish(stateDir: string, ports: PortSpec[]): Promise<void> {
  if (!ports.length) return;
  const api = stackSocket(stateDir);
  const listed = await callApi(api, { execute: 'list_hostfwd' }).catch(() => ({ entries: [] })) as { entries: Array<{ id: number; proto: string; host_addr: string; host_port: number }> };
  for (const e of listed.entries) {
    if (ports.some((p) => p.proto === e.proto && p.hostPort === e.host_port && (p.hostAddr || '0.0.0.0') === e.host_addr)) await callApi(api, { execute: 'remove_hostfwd', arguments: { id: e.id } }).catch(() => undefined);
  }
}

/** CNI operations inside the user's network namespace (`holder` once it exists). */
export function insideCniOps(config: BurrowConfig, get: CniOps['get'], checkIp: CniOps['checkIp'], holder: () => UserNetns): CniOps {
  // a holder killed meanwhile is made again for what is left to do (DEL: host-local's addresses
  // are kept in the user's state dir, the rest went with the old namespace)
  const inside = insideCni(config.stateDir, config, async () => {
    const h = holder();
    return processLive(h.pid, h.startTime) ? h.pid : (await userNetns(config)).holder.pid;
  });
  const name = (list: unknown) => (list as { name: string }).name;
  return {
    get,
    checkIp,
    add: (list, rt) => inside.add(name(list), rt),
    del: (list, rt) => inside.del(name(list), rt),
    reservePorts: async (ports) => {
      const api = stackSocket(config.stateDir);
      const added: PortSpec[] = [];
      const release = () => unpublish(config.stateDir, added.splice(0));
      try {
        for (const p of ports) {
          await callApi(api, { execute: 'add_hostfwd', arguments: { spec: stackSpec(p) } });
          added.push(p);
        }
      } catch (err) {
        await release();
        throw new ContainerError((err as Error).message);
      }
      return release;
    },
  };
}

export function userNetworkMode(config: BurrowConfig, ops: Pick<CniOps, 'get' | 'checkIp'>, requests: NetworkRequest[], o: { id: string }): NetworkMode {
  const self = o.id;
  let holder: UserNetns | null = null;
  const held = () => {
    if (!holder) throw new Error('the user\'s network namespace is not ready');
    return holder;
  };
  const cni = cniMode(insideCniOps(config, ops.get, ops.checkIp, held), requests);
  return {
    ...cni,
    initialRecord: () => ({ mode: 'cni', attachments: [], userNetns: true }),
    prepare: async (undo) => {
      holder = (await userNetns(config)).holder;
      // last out: the namespace goes with the last container that needs it
      undo.push('release the user\'s network namespace', async () => void (await collectUserNetns(config.stateDir, () => userNetnsNeeded(config.stateDir, self))));
    },
    insidePid: () => held().pid,
    attach: async (c, h, undo) => {
      const save = c.saveNetwork;
      const got = await cni.attach({ ...c, saveNetwork: (n) => save(n.mode === 'cni' ? { ...n, userNetns: true } : n) }, h, undo);
      // the stack's DNS forwarder, which also reaches resolvers on the host's loopback
      return { ...got, resolv: c.dns.length ? got.resolv : withNetworkDns(`nameserver ${USER_NETNS_DNS}\n`, got.networkDns) };
    },
  };
}
