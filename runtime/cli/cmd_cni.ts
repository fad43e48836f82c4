/**
 * `burrow cni add|del|check|status|gc`: the cnitool equivalent, driving any
 * network in the config dir (or the default network) through burrow's CNI
 * runtime. Tests and benchmarks use it too.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { BurrowError } from '../../native/errors.js';
import { checkContainerId, checkIfname, parseCniArgs } from '../../net/cni/config.js';
import type { Attachment } from '../../net/cni/types.js';
import { DEFAULT_CNI_SOCKET, LISTEN_FD_ENV, LISTEN_OWN_ENV } from '../cni/constants.js';
import type { Replacement } from '../cni/serve.js';
import { makeContext, netnsPath, requireNetns, type Context } from '../context.js';

interface AttachOpts {
  id?: string;
  ifname: string;
  args?: string;
  capArgs?: string;
}

/** cnitool's default container ID: derived from the netns path. */
export function defaultContainerId(netns: string): string {
  return `burrow-${crypto.createHash('sha512').update(netns).digest('hex').slice(0, 20)}`;
}

function parseCapArgs(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new BurrowError('EINVAL', `invalid --cap-args: ${(err as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new BurrowError('EINVAL', '--cap-args must be a JSON object such as \'{"portMappings":[...]}\'');
  return v as Record<string, unknown>;
}

function runtimeConf(netns: string, o: AttachOpts) {
  const containerId = o.id ?? defaultContainerId(netns);
  checkContainerId(containerId);
  checkIfname(o.ifname);
  return { containerId, netns, ifname: o.ifname, args: parseCniArgs(o.args), capabilityArgs: parseCapArgs(o.capArgs) };
}

function attachOptions(cmd: Command): Command {
  return cmd
    .option('--id <id>', 'container ID (default: derived from the netns path)')
    .option('--ifname <name>', 'interface name inside the netns', 'eth0')
    .option('--args <K=V;...>', 'CNI_ARGS')
    .option('--cap-args <json>', 'capability arguments, e.g. \'{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}\'');
}

/** Valid attachments for GC: --valid ID/IFNAME pairs, else every cached one whose netns still exists. */
function validAttachments(ctx: Context, network: string, valid: string[] | undefined): Attachment[] {
  if (valid?.length) {
    return valid.map((v) => {
      const slash = v.lastIndexOf('/');
      if (slash <= 0) throw new BurrowError('EINVAL', `invalid --valid "${v}": expected CONTAINERID/IFNAME`);
      return { containerID: v.slice(0, slash), ifname: v.slice(slash + 1) };
    });
  }
  return ctx.runtime.cache.list(network)
    .filter((e) => e.netns && fs.existsSync(e.netns))
    .map((e) => ({ containerID: e.containerId, ifname: e.ifName }));
}

export function cniCommand(globalOpts: () => { config?: string }, out: (s: string) => void): Command {
  const cni = new Command('cni').description('drive CNI plugins on a network (like cnitool)');
  const ctx = (plugins = false) => makeContext(globalOpts().config, { plugins });

  attachOptions(cni.command('add').description('attach NETNS to NETWORK (ADD) and print the result'))
    .argument('<network>').argument('<netns>', 'netns path or name under /run/netns')
    .action(async (network: string, netns: string, o: AttachOpts) => {
      const c = await ctx(true);
      const list = c.networks.get(network);
      const result = await c.runtime.addNetworkList(list, runtimeConf(requireNetns(netns), o));
      out(`${JSON.stringify(result, null, 2)}\n`);
    });

  attachOptions(cni.command('del').description('detach NETNS from NETWORK (DEL); succeeds when already gone'))
    .argument('<network>').argument('<netns>', 'netns path or name (it may already be deleted)')
    .action(async (network: string, netns: string, o: AttachOpts) => {
      const c = await ctx(true);
      await c.runtime.delNetworkList(c.networks.get(network), runtimeConf(netnsPath(netns), o));
    });

  attachOptions(cni.command('check').description('verify an attachment against its cached result (CHECK)'))
    .argument('<network>').argument('<netns>')
    .action(async (network: string, netns: string, o: AttachOpts) => {
      const c = await ctx(true);
      await c.runtime.checkNetworkList(c.networks.get(network), runtimeConf(requireNetns(netns), o));
    });

  cni.command('status').description('ask every plugin of NETWORK whether it can take ADDs (STATUS, spec 1.1.0)')
    .argument('<network>')
    .action(async (network: string) => {
      const c = await ctx(true);
      const list = c.networks.get(network);
      const asked = await c.runtime.statusNetworkList(list);
      out(asked ? `network "${network}": ready\n` : `network "${network}": cniVersion ${await c.runtime.versionOf(list)} predates STATUS; nothing to ask\n`);
    });

  cni.command('gc').description('remove attachments of NETWORK that are no longer valid (GC, spec 1.1.0)')
    .argument('<network>')
    .option('--valid <CONTAINERID/IFNAME...>', 'attachments to keep (default: cached ones whose netns still exists)')
    .action(async (network: string, o: { valid?: string[] }) => {
      const c = await ctx(true);
      const list = c.networks.get(network);
      const report = await c.runtime.gcNetworkList(list, validAttachments(c, network, o.valid));
      for (const a of report.removed) out(`removed ${a.containerID}/${a.ifname}\n`);
      out(`network "${network}": ${report.removed.length} stale attachment(s) removed${report.pluginsCalled ? ', plugins garbage-collected' : ''}\n`);
    });
  cni.command('install').description("install burrow's plugin executables where other runtimes look (podman, containerd, kubelet)")
    .option('--dir <dir>', 'target directory', '/opt/cni/bin')
    .option('-f, --force', 'replace files that are not burrow launchers (e.g. the reference plugins)')
    .option('--socket <path>', 'where the native launchers find "burrow cni serve"', DEFAULT_CNI_SOCKET)
    .option('--no-native', 'script launchers (Node per call) instead of the native ones')
    .option('--with-node', 'copy Node into the install too: the directory then runs on any x86-64 glibc host, moved or packed')
    .option('--link', 'run the plugins from this checkout instead of a copy in DIR/.burrow (they break when it moves)')
    .action(async (o: { dir: string; force?: boolean; socket: string; native: boolean; withNode?: boolean; link?: boolean }) => {
      const { installPlugins } = await import('../network/install.js');
      for (const line of installPlugins(o.dir, !!o.force, { native: o.native, socket: o.socket, link: !!o.link, withNode: !!o.withNode })) out(`${line}\n`);
    });

  cni.command('serve').description('serve the calls of the native plugin launchers from one resident process (see "burrow cni install")')
    .option('--socket <path>', 'unix socket to listen on (unless systemd hands one over)', DEFAULT_CNI_SOCKET)
    .option('--idle <seconds>', 'leave after this long without a call (0: never; for socket activation)', '0')
    .action(async (o: { socket: string; idle: string }) => {
      const idle = Number(o.idle);
      if (!Number.isFinite(idle) || idle < 0) throw new BurrowError('EINVAL', `invalid --idle "${o.idle}": expected seconds (0: never)`);
      const { serveCni } = await import('../cni/serve.js');
      const { installRoot } = await import('../config.js');
      const root = installRoot();
      // the unit runs DIR/.burrow/current/bin/burrow: Node resolved that symlink for the root
      const commandRoot = path.resolve(path.dirname(process.argv[1]), '..');
      const service = await serveCni({ socket: o.socket, root, commandRoot, idleMs: idle * 1000 });
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void service.close());
      await service.closed;
      const next = service.replacement();
      if (next) await replaceService(next, root);
    });

  cni.command('uninstall').description("remove burrow's plugin launchers and their runtime copy from a directory (other files stay)")
    .option('--dir <dir>', 'directory', '/opt/cni/bin')
    .action(async (o: { dir: string }) => {
      const { uninstallPlugins } = await import('../network/install.js');
      for (const line of uninstallPlugins(o.dir)) out(`${line}\n`);
    });
  return cni;
}

/**
 * A `cni serve` whose root now holds another build runs the same command line again in this
 * process (execve: the pid stays), with its listening socket passed on (runtime/cni/serve.ts). A
 * Node copied into the old copy (--with-node) is taken from the same place in the root that holds
 * the new build. Never returns; exits 125 when the exec fails (systemd restarts it).
 */
async function replaceService(next: Replacement, root: string): Promise<void> {
  const { execve } = await import('../../native/mod.js');
  const node = process.execPath.startsWith(`${root}/`) ? `${next.root}${process.execPath.slice(root.length)}` : process.execPath;
  const env: NodeJS.ProcessEnv = { ...process.env, [LISTEN_FD_ENV]: String(next.fd), [LISTEN_OWN_ENV]: next.ownSocket ? '1' : '0' };
  for (const k of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete env[k];
  try {
    execve(node, [node, ...process.execArgv, ...process.argv.slice(1)], env, [0, 1, 2, next.fd]); // stdio: the journal
  } catch (err) {
    process.stderr.write(`burrow: cannot start build ${next.build} in place of this service: ${(err as Error).message}\n`);
    process.exit(125);
  }
}

/** `burrow compat install|uninstall`: the drop-ins for podman's helpers, where containers.conf points. */
export function compatCommand(out: (s: string) => void): Command {
  const compat = new Command('compat').description("burrow's drop-ins for podman's network helpers (slirp4netns, aardvark-dns)");
  compat.command('install').description('install the drop-ins into a directory, for containers.conf\'s network_cmd_path or helper_binaries_dir')
    .option('--dir <dir>', 'target directory', '/usr/local/lib/burrow/podman')
    .option('-f, --force', 'replace files that are not burrow launchers (e.g. podman\'s own helpers)')
    .option('--link', 'run the drop-ins from this checkout instead of a copy in DIR/.burrow (they break when it moves)')
    .action(async (o: { dir: string; force?: boolean; link?: boolean }) => {
      const { installCompat } = await import('../network/install.js');
      for (const line of installCompat(o.dir, !!o.force, !!o.link)) out(`${line}\n`);
    });
  compat.command('uninstall').description("remove burrow's drop-ins from a directory (other files stay)")
    .option('--dir <dir>', 'directory', '/usr/local/lib/burrow/podman')
    .action(async (o: { dir: string }) => {
      const { uninstallCompat } = await import('../network/install.js');
      for (const line of uninstallCompat(o.dir)) out(`${line}\n`);
    });
  return compat;
}
