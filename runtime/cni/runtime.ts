/**
 * burrow's CNI runtime: what libcni is for podman, containerd and multus.
 *
 * Theory of operation
 * -------------------
 * A network is a NetworkConfigList; an attachment is (network, containerID,
 * ifname). For each call the runtime negotiates the list's version, derives
 * each plugin's stdin (plugin object + name + cniVersion + prevResult +
 * runtimeConfig from the capabilities it declares), and runs the chain:
 *
 *   ADD    plugins in order, each result is the next prevResult; the final
 *          result is cached. On failure the chain is DELeted in reverse
 *          (rollback) before the error is returned.
 *   DEL    plugins in reverse with the cached result as prevResult (>=0.4.0);
 *          every plugin runs even if one fails, the errors are joined; the
 *          cache entry goes only when all succeeded. A missing cache entry
 *          or netns is not an error.
 *   CHECK  (>=0.4.0, unless disableCheck) every plugin with the cached result.
 *   STATUS (>=1.1.0) each plugin until the first failure.
 *   GC     cached attachments not in the valid set get a full DEL from their
 *          cached config, then (>=1.1.0) every plugin gets GC.
 *
 * ADD/DEL/CHECK take a shared flock on the network and GC an exclusive one,
 * because the spec forbids GC concurrently with ADD or DEL.
 */
import fs from 'node:fs';
import path from 'node:path';
import { constants as nativeConstants, flock } from '../../native/mod.js';
import { formatCniArgs, parseConfList } from '../../net/cni/config.js';
import { findPlugin, invokePlugin, type InProcessResolver } from '../../net/cni/invoke.js';
import type { CniCommand } from '../../net/cni/skel.js';
import { CniCode, CniError, type Attachment, type NetworkConfigList, type PluginConf, type Result } from '../../net/cni/types.js';
import { compareVersions, fromCurrent, negotiateListVersion, toCurrent, versionAtLeast } from '../../net/cni/version.js';
import { DEFAULT_CACHE_DIR, ResultCache, type CacheEntry } from './cache.js';

/** Per-attachment arguments (libcni's RuntimeConf). */
export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifname: string;
  args?: [string, string][];
  /** Values for capabilities (portMappings, ips, mac, ...). */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniRuntimeOptions {
  /** CNI_PATH directories. */
  path: string[];
  cacheDir?: string;
  inProcess?: InProcessResolver;
  env?: NodeJS.ProcessEnv;
  /** DEL the chain when ADD fails. Default true. */
  rollback?: boolean;
}

/** Outcome of a GC run. */
export interface GcReport {
  removed: Attachment[];
  pluginsCalled: boolean;
}

export class CniRuntime {
  readonly cache: ResultCache;
  private readonly opts: CniRuntimeOptions;

  constructor(opts: CniRuntimeOptions) {
    this.opts = opts;
    this.cache = new ResultCache(opts.cacheDir ?? DEFAULT_CACHE_DIR);
  }

  private readonly versionCache = new Map<string, readonly string[] | null>();

  /**
   * The version the runtime uses for this list. With a single version that is libcni's answer.
   * When `cniVersions` offers several, the spec lets a runtime consult the plugins: burrow takes
   * the highest offered version that every plugin of the chain, and each one's IPAM delegate,
   * supports (VERSION, asked once per binary and process; free for in-process plugins). So a
   * list offering ["1.0.0", "1.1.0"] gets GC and STATUS on burrow's plugins and still works
   * with the reference plugins or an older libcni, which read "cniVersion".
   */
  async versionOf(list: NetworkConfigList): Promise<string> {
    const chosen = negotiateListVersion(list.cniVersion, list.cniVersions);
    const offered = [...new Set([...(list.cniVersions ?? []), list.cniVersion].filter(Boolean))];
    if (offered.length < 2) return chosen;
    const types = new Set<string>();
    for (const p of list.plugins) {
      types.add(p.type);
      const ipam = (p.ipam as { type?: unknown } | undefined)?.type;
      if (typeof ipam === 'string' && ipam) types.add(ipam);
    }
    const supported = await Promise.all([...types].map((t) => this.supportedVersions(t)));
    const candidates = offered.filter((v) => compareVersions(v, chosen) <= 0).sort(compareVersions).reverse();
    return candidates.find((v) => supported.every((s) => !s || s.includes(v))) ?? chosen;
  }

  /** A plugin's supportedVersions (null when it cannot be asked: then it does not constrain). */
  private async supportedVersions(type: string): Promise<readonly string[] | null> {
    const binary = findPlugin(type, this.opts.path);
    if (!binary) return null;
    const own = this.opts.inProcess?.(type, binary);
    if (own) return own.supportedVersions;
    const key = `${binary}:${fs.statSync(binary).mtimeMs}`;
    if (!this.versionCache.has(key)) {
      try {
        const out = (await invokePlugin(type, { command: 'VERSION', path: this.opts.path, stdin: Buffer.from('{"cniVersion":"1.0.0"}'), env: this.opts.env })) as { supportedVersions?: string[] } | undefined;
        this.versionCache.set(key, Array.isArray(out?.supportedVersions) ? out!.supportedVersions : null);
      } catch {
        this.versionCache.set(key, null);
      }
    }
    return this.versionCache.get(key)!;
  }

  /** Derives one plugin's stdin (libcni buildOneConfig + injectRuntimeConfig). */
  pluginStdin(list: NetworkConfigList, plugin: PluginConf, version: string, prevResult: Result | undefined, rt?: Pick<RuntimeConf, 'capabilityArgs'>, extra?: Record<string, unknown>): Buffer {
    const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: version };
    if (prevResult) conf.prevResult = fromCurrent(prevResult, version);
    const rc: Record<string, unknown> = {};
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
      if (on && rt?.capabilityArgs?.[cap] !== undefined) rc[cap] = rt.capabilityArgs[cap];
    }
    if (Object.keys(rc).length) conf.runtimeConfig = rc;
    else delete conf.runtimeConfig;
    Object.assign(conf, extra);
    return Buffer.from(JSON.stringify(conf));
  }

  private async call(command: CniCommand, list: NetworkConfigList, plugin: PluginConf, version: string, prev: Result | undefined, rt?: RuntimeConf, extra?: Record<string, unknown>): Promise<unknown> {
    return invokePlugin(plugin.type, {
      command,
      containerId: rt?.containerId,
      netns: rt?.netns,
      ifname: rt?.ifname,
      args: rt?.args ? formatCniArgs(rt.args) : '',
      path: this.opts.path,
      stdin: this.pluginStdin(list, plugin, version, prev, rt, extra),
      env: this.opts.env,
    }, { inProcess: this.opts.inProcess });
  }

  /** Fails before anything is touched when a plugin of the chain is not on CNI_PATH. */
  private requirePlugins(list: NetworkConfigList): void {
    for (const p of list.plugins) {
      if (!findPlugin(p.type, this.opts.path)) {
        throw new CniError(CniCode.InvalidNetworkConfig, `failed to find plugin "${p.type}" in path [${this.opts.path.join(' ')}]`, undefined, { plugin: p.type });
      }
    }
  }

  /** The lock file of a network (removed with the network by removeNetworkState). */
  lockFile(network: string): string {
    return path.join(this.cache.dir, 'burrow-locks', `${network}.lock`);
  }

  /** Forgets a removed network: its lock file. */
  removeNetworkState(network: string): void {
    fs.rmSync(this.lockFile(network), { force: true });
  }

  /** Holds a flock on the network while `fn` runs: shared for ADD/DEL/CHECK, exclusive for GC. */
  private async locked<T>(list: NetworkConfigList, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    this.requirePlugins(list);
    const file = this.lockFile(list.name);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = fs.openSync(file, 'a', 0o600);
    try {
      const c = nativeConstants();
      await flock(fd, exclusive ? c.LOCK_EX : c.LOCK_SH);
      return await fn();
    } finally {
      fs.closeSync(fd);
    }
  }

  /** ADD over the chain; returns the final result in the list's version. */
  async addNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<unknown> {
    const version = await this.versionOf(list);
    return this.locked(list, false, async () => {
      let prev: Result | undefined;
      for (const plugin of list.plugins) {
        try {
          const out = await this.call('ADD', list, plugin, version, prev, rt);
          if (out === undefined) throw new CniError(CniCode.DecodingFailure, `plugin "${plugin.type}" returned no result for ADD`, undefined, { plugin: plugin.type });
          prev = toCurrent(out, version);
        } catch (err) {
          if (this.opts.rollback ?? true) await this.rollback(list, version, prev, rt, err as Error);
          throw err;
        }
      }
      const result = fromCurrent(prev!, version);
      this.cache.write({
        kind: 'cniCacheV1', containerId: rt.containerId, config: list.bytes.toString('base64'), ifName: rt.ifname,
        networkName: list.name, netns: rt.netns, cniArgs: rt.args ?? [], capabilityArgs: rt.capabilityArgs ?? {}, result,
      });
      return result;
    });
  }

  private async rollback(list: NetworkConfigList, version: string, prev: Result | undefined, rt: RuntimeConf, cause: Error): Promise<void> {
    try {
      await this.delChain(list, version, prev, rt);
    } catch (err) {
      // Keep the ADD error first; the rollback failure rides along for the log.
      (cause as Error & { rollbackError?: unknown }).rollbackError = err;
    }
  }

  private async delChain(list: NetworkConfigList, version: string, prev: Result | undefined, rt: RuntimeConf): Promise<void> {
    const errors: Error[] = [];
    const prevForDel = versionAtLeast(version, '0.4.0') ? prev : undefined;
    for (const plugin of [...list.plugins].reverse()) {
      try {
        await this.call('DEL', list, plugin, version, prevForDel, rt);
      } catch (err) {
        errors.push(err as Error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length) throw new CniError(errors[0] instanceof CniError ? errors[0].cniCode : CniCode.Internal, errors.map((e) => e.message).join('; '));
  }

  /** The cached result for an attachment, in the 1.1.0 shape, or undefined. */
  cachedResult(list: NetworkConfigList, rt: Pick<RuntimeConf, 'containerId' | 'ifname'>): Result | undefined {
    const entry = this.cache.read(list.name, rt.containerId, rt.ifname);
    if (!entry?.result) return undefined;
    try {
      return toCurrent(entry.result, list.cniVersion || '1.0.0');
    } catch {
      return undefined;
    }
  }

  /** DEL over the chain in reverse. Idempotent: succeeds when nothing is left. */
  async delNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    const version = await this.versionOf(list);
    await this.locked(list, false, () => this.delLocked(list, version, rt));
  }

  private async delLocked(list: NetworkConfigList, version: string, rt: RuntimeConf): Promise<void> {
    // DEL must see what ADD saw (portmap needs the same portMappings to find its rules):
    // arguments the caller leaves out come from the cache entry, as libcni's GC replays them.
    const entry = this.cache.read(list.name, rt.containerId, rt.ifname);
    const full: RuntimeConf = {
      ...rt,
      // an fd path (/proc/PID/fd/N, /proc/self/fd/N) named the netns only for the process that
      // held the fd: replayed later it names nothing, or another fd
      netns: rt.netns || (entry?.netns && !/^\/proc\/[^/]+\/fd\//.test(entry.netns) ? entry.netns : ''),
      args: rt.args?.length ? rt.args : entry?.cniArgs,
      capabilityArgs: rt.capabilityArgs ?? entry?.capabilityArgs,
    };
    await this.delChain(list, version, this.cachedResult(list, rt), full);
    this.cache.remove(list.name, rt.containerId, rt.ifname);
  }

  /** CHECK over the chain against the cached result. */
  async checkNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    const version = await this.versionOf(list);
    if (!versionAtLeast(version, '0.4.0')) {
      throw new CniError(CniCode.IncompatibleVersion, `configuration version "${version}" of network "${list.name}" does not support the CHECK command`);
    }
    if (list.disableCheck) return;
    await this.locked(list, false, async () => {
      const cached = this.cachedResult(list, rt);
      if (!cached) throw new CniError(CniCode.UnknownContainer, `no cached result for container "${rt.containerId}" interface "${rt.ifname}" on network "${list.name}": was it added?`);
      for (const plugin of list.plugins) await this.call('CHECK', list, plugin, version, cached, rt);
    });
  }

  /** STATUS of each plugin until the first failure. Returns false when the version predates STATUS. */
  async statusNetworkList(list: NetworkConfigList): Promise<boolean> {
    const version = await this.versionOf(list);
    if (!versionAtLeast(version, '1.1.0')) return false;
    for (const plugin of list.plugins) await this.call('STATUS', list, plugin, version, undefined);
    return true;
  }

  /** GC: DEL every cached attachment not in `valid`, then GC each plugin (>=1.1.0). */
  async gcNetworkList(list: NetworkConfigList, valid: Attachment[]): Promise<GcReport> {
    if (list.disableGC) return { removed: [], pluginsCalled: false };
    const version = await this.versionOf(list);
    return this.locked(list, true, async () => {
      const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
      const removed: Attachment[] = [];
      const errors: Error[] = [];
      for (const entry of this.cache.list(list.name)) {
        if (keep.has(`${entry.containerId}\0${entry.ifName}`)) continue;
        try {
          const cachedList = this.listFromCache(entry) ?? list;
          await this.delLocked(cachedList, await this.versionOf(cachedList), {
            containerId: entry.containerId, ifname: entry.ifName, netns: entry.netns ?? '',
            args: entry.cniArgs, capabilityArgs: entry.capabilityArgs,
          });
          removed.push({ containerID: entry.containerId, ifname: entry.ifName });
        } catch (err) {
          errors.push(err as Error);
        }
      }
      let pluginsCalled = false;
      if (versionAtLeast(version, '1.1.0')) {
        pluginsCalled = true;
        for (const plugin of list.plugins) {
          try {
            await this.call('GC', list, plugin, version, undefined, undefined, { 'cni.dev/valid-attachments': valid, 'cni.dev/attachments': valid });
          } catch (err) {
            errors.push(err as Error);
          }
        }
      }
      if (errors.length) throw new CniError(CniCode.Internal, `GC of network "${list.name}" incomplete: ${errors.map((e) => e.message).join('; ')}`);
      return { removed, pluginsCalled };
    });
  }

  private listFromCache(entry: CacheEntry): NetworkConfigList | undefined {
    if (!entry.config) return undefined;
    try {
      return parseConfList(Buffer.from(entry.config, 'base64'));
    } catch {
      return undefined;
    }
  }

  /** VERSION of every plugin: checks that each exists and supports the list's version. */
  async validateNetworkList(list: NetworkConfigList): Promise<void> {
    const version = await this.versionOf(list);
    for (const plugin of list.plugins) {
      const out = (await this.call('VERSION', list, plugin, version, undefined)) as { supportedVersions?: string[] } | undefined;
      if (!out?.supportedVersions?.includes(version)) {
        throw new CniError(CniCode.IncompatibleVersion, `plugin "${plugin.type}" does not support config version "${version}"`, `plugin supports ${JSON.stringify(out?.supportedVersions ?? [])}`, { plugin: plugin.type });
      }
    }
  }
}
