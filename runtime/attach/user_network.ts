/**
 * A rootless container on one of the user's own networks: the container's namespaces are made
 * inside the user's network namespace (its user namespace owns them), and burrow's CNI runtime
 * and plugins run there as its root, with real veths, a real bridge and real netfilter rules, as
 * rootful. Containers of the user's networks reach each other at kernel speed. The namespace is
 * made on first use and removed with the last container that needs it.
 */
import { processStartTime } from '../../native/system.js';
import type { BurrowConfig } from '../config.js';
import { ContainerError, ContainerStore } from '../container/containers.js';
import type { NetworkRequest } from '../network/netspec.js';
import { formatPortSpec } from '../../net/ports/portspec.js';
import { callApi } from '../../net/usernet/api.js';
import { collectUserNetns, ensureUserNetns, insideCni, stackSocket, USER_NETNS_DNS, type UserNetns } from '../network/user_netns.js';
import { cniMode, type CniOps } from './cni.js';
import type { NetworkMode } from './types.js';

/** Whether a container of this state dir other than `except` still runs on a user network. */
export function userNetnsNeeded(stateDir: string, except?: string): boolean {
  return new ContainerStore(stateDir).list().some((r) => r.id !== except && r.network.mode === 'cni' && r.network.userNetns && r.state === 'running' && ContainerStore.alive(r));
}

/** CNI operations inside the user's network namespace (`holder` once it exists). */
export function insideCniOps(config: BurrowConfig, get: CniOps['get'], checkIp: CniOps['checkIp'], holder: () => UserNetns): CniOps {
  // a holder killed meanwhile is made again for what is left to do (DEL: host-local's addresses
  // are kept in the user's state dir, the rest went with the old namespace)
  const inside = insideCni(config.stateDir, config, async () => {
    const h = holder();
    return processStartTime(h.pid) === h.startTime ? h.pid : (await ensureUserNetns(config.stateDir)).holder.pid;
  });
  const name = (list: unknown) => (list as { name: string }).name;
  return {
    get,
    checkIp,
    add: (list, rt) => inside.add(name(list), rt),
    del: (list, rt) => inside.del(name(list), rt),
    // The stack binds each host port and forwards it to the same port of the namespace's own
    // address (10.0.2.100; the client's address kept, loopback clients spliced); portmap's DNAT
    // there takes it on to the container, as on the host when rootful.
    reservePorts: async (ports) => {
      const api = stackSocket(config.stateDir);
      const ids: number[] = [];
      const release = async () => {
        for (const id of ids.splice(0)) await callApi(api, { execute: 'remove_hostfwd', arguments: { id } }).catch(() => undefined);
      };
      try {
        for (const p of ports) {
          const r = (await callApi(api, { execute: 'add_hostfwd', arguments: { spec: formatPortSpec({ ...p, guestPort: p.hostPort }) } })) as { ids: number[] };
          ids.push(...r.ids);
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
      holder = (await ensureUserNetns(config.stateDir)).holder;
      // last out: the namespace goes with the last container that needs it
      undo.push('release the user\'s network namespace', async () => void (await collectUserNetns(config.stateDir, () => userNetnsNeeded(config.stateDir, self))));
    },
    insidePid: () => held().pid,
    attach: async (c, h, undo) => {
      const save = c.saveNetwork;
      const got = await cni.attach({ ...c, saveNetwork: (n) => save(n.mode === 'cni' ? { ...n, userNetns: true } : n) }, h, undo);
      // the stack's DNS forwarder, which also reaches resolvers on the host's loopback
      return { ...got, resolv: c.dns.length ? got.resolv : `nameserver ${USER_NETNS_DNS}\n` };
    },
  };
}
