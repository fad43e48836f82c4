/** --network host (the host's network namespace, shared) and --network none (loopback only). */
import type { Attached, NetworkMode } from './types.js';
import { readHostResolv, resolvConf } from './resolv.js';

export function hostMode(readResolv: () => string = readHostResolv): NetworkMode {
  return {
    kind: 'host',
    ownNetns: false,
    holdable: true,
    initialRecord: () => ({ mode: 'host' }),
    attach: async (c): Promise<Attached> => ({ ips: [], resolv: resolvConf(c.dns, readResolv(), { hostNetwork: true }), extraHosts: [] }),
  };
}

export function noneMode(): NetworkMode {
  return {
    kind: 'none',
    ownNetns: true,
    holdable: true,
    initialRecord: () => ({ mode: 'none' }),
    attach: async (): Promise<Attached> => ({ ips: [], resolv: '', extraHosts: [] }),
  };
}
