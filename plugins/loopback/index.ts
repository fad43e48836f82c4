/**
 * loopback: brings `lo` up in the container netns (CNI_IFNAME is ignored, as
 * in the reference). Without a prevResult it reports lo with its loopback
 * addresses; chained, it passes prevResult through. DEL sets lo down and
 * succeeds when the netns is gone.
 */
import fs from 'node:fs';
import type { CniPlugin } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import { parseCidr } from '../../net/ip/addr.js';
import type { NetlinkClient } from '../../net/netlink/client.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';

function isLoopback(cidr: string): boolean {
  const c = parseCidr(cidr);
  return c.ip.family === 4 ? c.ip.value >> 24n === 127n : c.ip.value === 1n;
}

export function makeLoopback(open: (netns: string) => NetlinkClient = (n) => new RtnlClient(n), exists = (p: string) => fs.existsSync(p)): CniPlugin {
  return {
    name: 'loopback',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    async add(req) {
      if (!exists(req.netns)) throw new CniError(CniCode.UnknownContainer, `failed to open netns "${req.netns}": no such file`);
      const nl = open(req.netns);
      let v4: string | undefined;
      let v6: string | undefined;
      try {
        await nl.setUp('lo', true);
        for (const a of await nl.listAddresses('lo')) {
          if (!isLoopback(a.cidr)) throw new CniError(CniCode.Internal, `loopback interface found with non-loopback address "${a.cidr}"`);
          if (a.family === 4) v4 ??= a.cidr;
          else v6 ??= a.cidr;
        }
      } finally {
        nl.close();
      }
      if (req.prevResult) return req.prevResult;
      const result: Result = { cniVersion: '1.1.0', interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: req.netns }], ips: [], dns: {} };
      for (const a of [v4, v6]) if (a) result.ips!.push({ interface: 0, address: a });
      if (!result.ips!.length) delete result.ips;
      return result;
    },
    async del(req) {
      if (!req.netns || !exists(req.netns)) return;
      const nl = open(req.netns);
      try {
        await nl.setUp('lo', false);
      } finally {
        nl.close();
      }
    },
    async check(req) {
      const nl = open(req.netns);
      try {
        const lo = await nl.getLink('lo');
        if (!lo?.up) throw new CniError(CniCode.Internal, `loopback interface is down in netns "${req.netns}"`);
      } finally {
        nl.close();
      }
    },
    async status() {},
    async gc() {},
  };
}

export const loopback = makeLoopback();
