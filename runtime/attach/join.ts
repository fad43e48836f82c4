/**
 * --pod and --network container:NAME: the container enters the target's namespaces (the helper
 * joins them), so there is nothing to attach. Its /etc files are the target's: its addresses,
 * nameservers and host entries, plus this container's own name.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ContainerRecord } from '../container/containers.js';
import type { Attached, NetworkMode } from './types.js';

const OWN = new Set(['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback']);

/** `targetDir`: the target container's state dir, where its hosts and resolv.conf are. */
export function joinMode(target: ContainerRecord, targetDir: string): NetworkMode {
  return {
    kind: 'container',
    ownNetns: false,
    holdable: true,
    initialRecord: () => ({ mode: 'container', target: target.id }),
    attach: async (): Promise<Attached> => {
      const read = (f: string) => {
        try {
          return fs.readFileSync(path.join(targetDir, f), 'utf8');
        } catch {
          return '';
        }
      };
      const extraHosts = read('hosts').split('\n').filter((l) => l.trim() && !OWN.has(l));
      return { ips: target.ips ?? [], resolv: read('resolv.conf'), extraHosts };
    },
  };
}
