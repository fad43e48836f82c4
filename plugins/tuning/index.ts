/**
 * tuning (chained): sysctls of the container netns (net.* only, with the
 * reference's optional allowlist /etc/cni/tuning/allowlist.conf and IFNAME
 * substitution), and the interface's MAC, MTU, promisc and allmulti.
 *
 * Before it changes link attributes it saves their old values to
 * <dataDir>/<containerID>_<ifname>.json in the reference's format, and DEL
 * restores them and removes the file, so either implementation undoes the
 * other's ADD. GC removes saved files of attachments that are not valid.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import { parseMac, type NetlinkClient } from '../../net/netlink/client.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { ProcSysctl, sysctlPath, type Sysctl } from '../../net/netlink/sysctl.js';
import { configError, loadArgs, optString } from '../common.js';

const DEFAULT_DATA_DIR = '/run/cni/tuning';
const ALLOWLIST = '/etc/cni/tuning/allowlist.conf';

type Obj = Record<string, unknown>;

interface TuningConf {
  sysctl: [string, string][];
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  dataDir: string;
}

/** The saved originals, as the reference writes them (omitempty fields, this key order). */
interface Saved {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
}

export interface TuningDeps {
  netlink(netns: string): NetlinkClient;
  sysctl(netns: string): Sysctl;
  allowlist(): string[] | null;
  exists(p: string): boolean;
}

const realDeps: TuningDeps = {
  netlink: (n) => new RtnlClient(n),
  sysctl: (n) => new ProcSysctl(n),
  allowlist: () => {
    try {
      return fs.readFileSync(ALLOWLIST, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    } catch {
      return null;
    }
  },
  exists: (p) => fs.existsSync(p),
};

function parseConf(req: PluginRequest): TuningConf {
  const c = req.config;
  const cniArgs = ((c.args as Obj | undefined)?.cni ?? {}) as Obj;
  const rc = (c.runtimeConfig ?? {}) as Obj;
  const envMac = loadArgs(req, ['MAC']).get('MAC');
  const sysctlObj = (cniArgs.sysctl ?? c.sysctl ?? {}) as unknown;
  if (!sysctlObj || typeof sysctlObj !== 'object' || Array.isArray(sysctlObj)) throw configError('invalid "sysctl": expected an object of key: "value"');
  const sysctl: [string, string][] = [];
  const seen = new Map<string, string>();
  for (const [k, v] of Object.entries(sysctlObj as Obj)) {
    if (typeof v !== 'string') throw configError(`invalid sysctl value for "${k}": expected a string, got ${JSON.stringify(v)}`);
    const key = k.replaceAll('IFNAME', req.ifname);
    let file: string;
    try {
      file = sysctlPath(key);
    } catch {
      throw configError(`invalid net sysctl key: "${k}"`);
    }
    if (seen.has(file) && seen.get(file) !== v) throw configError(`conflicting values for sysctl "${k}"`);
    seen.set(file, v);
    sysctl.push([key, v]);
  }
  const mac = (rc.mac ?? cniArgs.mac ?? envMac ?? optString(c, 'mac')) as unknown;
  if (mac !== undefined && mac !== '') {
    if (typeof mac !== 'string') throw configError(`invalid MAC ${JSON.stringify(mac)}`);
    try {
      parseMac(mac);
    } catch {
      throw configError(`invalid MAC address "${mac}"`);
    }
  }
  const mtu = cniArgs.mtu ?? c.mtu;
  if (mtu !== undefined && (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65536)) throw configError(`invalid "mtu" ${JSON.stringify(mtu)}: expected 68-65536`);
  const bool = (k: string) => {
    const v = cniArgs[k] ?? c[k];
    if (v !== undefined && typeof v !== 'boolean') throw configError(`invalid "${k}": expected true or false`);
    return v as boolean | undefined;
  };
  const dataDir = optString(c, 'dataDir') ?? DEFAULT_DATA_DIR;
  return { sysctl, mac: (mac as string | undefined) || undefined, mtu: mtu as number | undefined, promisc: bool('promisc'), allmulti: bool('allmulti'), dataDir };
}

function savedFile(conf: TuningConf, req: PluginRequest): string {
  return path.join(conf.dataDir, `${req.containerId}_${req.ifname}.json`);
}

function checkAllowed(deps: TuningDeps, key: string): void {
  const allow = deps.allowlist();
  if (!allow) return;
  const dotted = key.replaceAll('/', '.');
  if (!allow.some((re) => new RegExp(re).test(dotted))) {
    throw configError(`Sysctl ${dotted} is not allowed. Only the following sysctls are allowed: [${allow.join(' ')}]`);
  }
}

function changesLink(conf: TuningConf): boolean {
  return conf.mac !== undefined || conf.mtu !== undefined || conf.promisc !== undefined || conf.allmulti !== undefined;
}

export function makeTuning(deps: TuningDeps = realDeps): CniPlugin {
  return {
    name: 'tuning',
    supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],

    async add(req) {
      const conf = parseConf(req);
      if (!req.prevResult) throw new CniError(CniCode.Internal, 'Required prevResult missing');
      if (!deps.exists(req.netns)) throw new CniError(CniCode.UnknownContainer, `failed to open netns "${req.netns}": no such file`);
      const s = deps.sysctl(req.netns);
      for (const [key] of conf.sysctl) checkAllowed(deps, key);
      for (const [key, value] of conf.sysctl) s.set(key, value);
      const result: Result = structuredClone(req.prevResult);
      if (!changesLink(conf)) return result;
      const nl = deps.netlink(req.netns);
      try {
        const link = await nl.getLink(req.ifname);
        if (!link) throw new CniError(CniCode.Internal, `failed to get link "${req.ifname}" in netns "${req.netns}"`);
        const file = savedFile(conf, req);
        if (!fs.existsSync(file)) {
          const saved: Saved = {};
          if (conf.mac !== undefined) saved.mac = link.mac;
          if (conf.promisc !== undefined) saved.promisc = link.promisc;
          if (conf.mtu !== undefined) saved.mtu = link.mtu;
          if (conf.allmulti !== undefined) saved.allmulti = link.allmulti;
          fs.mkdirSync(conf.dataDir, { recursive: true, mode: 0o700 });
          fs.writeFileSync(file, JSON.stringify(saved, null, 1), { mode: 0o600 });
        }
        if (conf.mtu !== undefined) await nl.setMtu(req.ifname, conf.mtu);
        if (conf.promisc !== undefined) await nl.setPromisc(req.ifname, conf.promisc);
        if (conf.allmulti !== undefined) await nl.setAllmulti(req.ifname, conf.allmulti);
        if (conf.mac !== undefined) {
          await nl.setMac(req.ifname, conf.mac);
          for (const i of result.interfaces ?? []) if (i.name === req.ifname && i.sandbox) i.mac = conf.mac.toLowerCase();
        }
      } finally {
        nl.close();
      }
      return result;
    },

    async del(req) {
      const conf = parseConf(req);
      const file = savedFile(conf, req);
      if (!fs.existsSync(file)) return;
      if (req.netns && deps.exists(req.netns)) {
        const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Saved;
        const nl = deps.netlink(req.netns);
        try {
          if (await nl.getLink(req.ifname)) {
            if (saved.mtu !== undefined) await nl.setMtu(req.ifname, saved.mtu);
            if (saved.promisc !== undefined) await nl.setPromisc(req.ifname, saved.promisc);
            if (saved.allmulti !== undefined) await nl.setAllmulti(req.ifname, saved.allmulti);
            if (saved.mac !== undefined) await nl.setMac(req.ifname, saved.mac);
          }
        } finally {
          nl.close();
        }
      }
      fs.rmSync(file, { force: true });
    },

    async check(req) {
      const conf = parseConf(req);
      const s = deps.sysctl(req.netns);
      for (const [key, value] of conf.sysctl) {
        const have = s.get(key);
        if (have !== value) throw new CniError(CniCode.Internal, `sysctl "${key}" is "${have}", expected "${value}"`);
      }
      if (!changesLink(conf)) return;
      const nl = deps.netlink(req.netns);
      try {
        const link = await nl.getLink(req.ifname);
        if (!link) throw new CniError(CniCode.Internal, `link "${req.ifname}" not found in netns "${req.netns}"`);
        if (conf.mtu !== undefined && link.mtu !== conf.mtu) throw new CniError(CniCode.Internal, `"${req.ifname}" has MTU ${link.mtu}, expected ${conf.mtu}`);
        if (conf.mac !== undefined && link.mac !== conf.mac.toLowerCase()) throw new CniError(CniCode.Internal, `"${req.ifname}" has MAC ${link.mac}, expected ${conf.mac}`);
        if (conf.promisc !== undefined && link.promisc !== conf.promisc) throw new CniError(CniCode.Internal, `"${req.ifname}" promisc is ${link.promisc}, expected ${conf.promisc}`);
        if (conf.allmulti !== undefined && link.allmulti !== conf.allmulti) throw new CniError(CniCode.Internal, `"${req.ifname}" allmulti is ${link.allmulti}, expected ${conf.allmulti}`);
      } finally {
        nl.close();
      }
    },

    async status() {},

    async gc() {
      // Saved files name no network, and GC is per network: removing them here could undo
      // another network's attachment. DEL removes them; nothing is left to collect.
    },
  };
}

export const tuning = makeTuning();
