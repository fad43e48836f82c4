/**
 * --network usernet: burrow's userspace stack on a TAP the helper made inside the container's
 * netns, run by this process (the container's supervisor), with -p as its forwards and an API
 * socket for `burrow port add/rm`. The addressing is slirp4netns's (10.0.2.100, gateway .2, DNS .3).
 */
import path from 'node:path';
import { DEFAULT_ADDRESSING, planAddressing, type UsernetPlan } from '../../net/usernet/usernet.js';
import { checkMapHostLoopback, type UsernetSession, type UsernetSetup } from '../network/usernet.js';
import type { Attached, NetworkMode } from './types.js';

export type StartUsernet = (pid: number, tapFd: number, s: UsernetSetup) => Promise<Pick<UsernetSession, 'stop'>>;

/** The API socket of container `id` (unix socket paths are limited to 108 bytes: the short id). */
export function usernetApiSocket(stateDir: string, id: string): string {
  return path.join(stateDir, 'sock', `${id.slice(0, 12)}.sock`);
}

export function usernetMode(o: { mapHostLoopback?: string; start?: StartUsernet; plan?: UsernetPlan } = {}): NetworkMode {
  const tap = 'eth0';
  const plan = o.plan ?? planAddressing(DEFAULT_ADDRESSING);
  const start = o.start;
  if (o.mapHostLoopback) checkMapHostLoopback(o.mapHostLoopback, plan);
  return {
    kind: 'usernet',
    ownNetns: true,
    tap,
    initialRecord: () => ({ mode: 'usernet' }),
    attach: async (c, held, undo): Promise<Attached> => {
      if (held.tapFd === undefined) throw new Error('usernet needs the TAP made inside the container');
      const apiSocket = usernetApiSocket(c.stateDir, c.id);
      const run = start ?? (await import('../network/usernet.js')).startUsernet;
      const session = await run(held.pid, held.tapFd, { plan, tapName: tap, configure: true, ports: c.ports, mapHostLoopback: c.mapHostLoopback, apiSocket });
      undo.push('stop the usernet stack', () => session.stop());
      const resolv = c.dns.length ? c.dns.map((d) => `nameserver ${d}\n`).join('') : `nameserver ${plan.dns4}\n${plan.dns6 ? `nameserver ${plan.dns6}\n` : ''}`;
      const extraHosts = c.mapHostLoopback ? [`${c.mapHostLoopback}\thost.containers.internal host.docker.internal`] : [];
      return { ips: [plan.guest4], resolv, extraHosts, apiSocket };
    },
  };
}
