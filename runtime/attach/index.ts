/** Picks the attachment mode of a run; builds the CNI operations from the loaded context. */
import { ensureDhcpDaemon } from '../network/dhcp_daemon.js';
import { reserveHostPorts } from '../../net/ports/host_ports.js';
import type { PortSpec } from '../../net/ports/portspec.js';
import type { Context } from '../context.js';
import type { ContainerRecord } from '../container/containers.js';
import type { NetworkRequest } from '../network/netspec.js';
import { checkStaticIp } from '../network/conflist.js';
import type { NetworkConfigList } from '../../net/cni/types.js';
import { anchorMode } from './anchor.js';
import { cniMode, type CniOps, type CniRuntimeConf } from './cni.js';
import { joinMode } from './join.js';
import { hostMode, noneMode } from './plain.js';
import type { NetworkMode } from './types.js';
import { usernetMode } from './usernet.js';
import { userNetworkMode } from './user_network.js';

export type { Attached, AttachContext, Held, NetworkMode, NetworkRecord } from './types.js';
export { UndoStack, type UndoFailure } from './undo.js';
export { gcCni } from './cni.js';
export { usernetApiSocket } from './usernet.js';
export { insideCniOps, unpublish, userNetns, userNetnsNeeded } from './user_network.js';

export function cniOps(ctx: Context): CniOps {
  return {
    add: async (list, rt: CniRuntimeConf) => {
      await ensureDhcpDaemon(list as NetworkConfigList); // a DHCP network's leases need their daemon
      return ctx.runtime.addNetworkList(list as NetworkConfigList, rt);
    },
    del: (list, rt: CniRuntimeConf) => ctx.runtime.delNetworkList(list as NetworkConfigList, rt),
    get: (name) => ctx.networks.get(name),
    checkIp: (list, ip) => checkStaticIp(list as NetworkConfigList, ip),
    reservePorts: reserveHostPorts,
  };
}

export interface ModeChoice {
  /** usernet, host, none, pasta, slirp4netns, or a CNI network (then `requests` names them). */
  network: string;
  requests: NetworkRequest[];
  /** --pod / --network container:NAME: the running container whose namespaces are shared, and its state dir. */
  join?: { target: ContainerRecord; dir: string };
  ports: PortSpec[];
  mapHostLoopback?: string;
  /** The container's id (a user network's namespace is released when its last container goes). */
  id: string;
}

/** The mode for a run; validates what it can before anything starts (tools installed, addresses). */
export function chooseMode(ctx: Context, c: ModeChoice): NetworkMode {
  if (c.join) return joinMode(c.join.target, c.join.dir);
  switch (c.network) {
    case 'host': return hostMode();
    case 'none': return noneMode();
    case 'usernet': return usernetMode({ mapHostLoopback: c.mapHostLoopback });
    case 'pasta': case 'slirp4netns': return anchorMode(c.network, { ports: c.ports });
    default:
      if (process.getuid?.() !== 0) return userNetworkMode(ctx.config, cniOps(ctx), c.requests, { id: c.id });
      return cniMode(cniOps(ctx), c.requests);
  }
}
