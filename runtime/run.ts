/**
 * `burrow run` in the foreground: a command in new namespaces (net, mnt, pid, uts, ipc, user),
 * with the host's filesystem read-only (or --rootfs), generated /etc/hosts, resolv.conf and
 * hostname, and networking from burrow's CNI runtime (rootful default: the default bridge network)
 * or burrow's userspace stack (rootless default: usernet).
 *
 * Order of events, so that nothing is left behind: validate everything; record the container
 * (supervisor = this process); start the namespaces with the command held; attach the network
 * (CNI ADD into the held netns, or the userspace stack on the TAP); write the /etc files; let the
 * command run; relay signals; on exit (or any error on the way) detach the network (CNI DEL while
 * our fd still keeps the netns alive), and remove the record. If this process is killed with -9,
 * the container dies with it (PR_SET_PDEATHSIG) and `gcContainers` (run by the next `burrow run`
 * and by `burrow system gc`) deletes the stale attachment and record.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parsePortSpec, type PortSpec } from '../net/usernet/forward.js';
import { parseIdMapSpec, parseUsernsMode } from '../userns/mapping.js';
import { startInNamespaces, type Started } from '../userns/unshare.js';
import { ContainerError, ContainerStore, type ContainerRecord } from './containers.js';
import { makeContext, type Context } from './context.js';
import { planAddressing, DEFAULT_ADDRESSING } from '../net/usernet/usernet.js';
import { processStartTime } from '../userns/auto.js';

export interface RunOptions {
  cmd: string[];
  name?: string;
  network?: string;
  publish: string[];
  ip?: string;
  mac?: string;
  dns: string[];
  hostname?: string;
  userns?: string;
  uidmap: string[];
  gidmap: string[];
  rootfs?: string;
  env: string[];
  workdir?: string;
  mapHostLoopback?: string;
}

const SPECIAL = ['usernet', 'host', 'none'];

function checkRootfs(dir: string | undefined): void {
  if (dir === undefined) return;
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new ContainerError(`--rootfs "${dir}" does not exist`);
  if (!st.isDirectory()) throw new ContainerError(`--rootfs "${dir}" is not a directory`);
}

function containerEnv(o: RunOptions, hostname: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', TERM: 'xterm', HOSTNAME: hostname, HOME: '/root', container: 'burrow' };
  for (const kv of o.env) {
    const eq = kv.indexOf('=');
    if (eq <= 0) {
      // -e NAME passes the caller's value, as podman does
      if (process.env[kv] !== undefined) env[kv] = process.env[kv];
      continue;
    }
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

/** portMappings capability entries (one per port of a range). */
function portMappings(specs: PortSpec[]): Array<Record<string, unknown>> {
  return specs.flatMap((s) => Array.from({ length: s.count }, (_, i) => ({ hostPort: s.hostPort + i, containerPort: s.guestPort + i, protocol: s.proto, ...(s.hostAddr ? { hostIP: s.hostAddr } : {}) })));
}

function writeEtc(dir: string, hostname: string, name: string, ips: string[], resolv: string, extraHosts: string[]): string[] {
  const hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', ...ips.map((ip) => `${ip}\t${hostname} ${name}`), ...extraHosts].join('\n');
  fs.writeFileSync(path.join(dir, 'hosts'), `${hosts}\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'resolv.conf'), resolv, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'hostname'), `${hostname}\n`, { mode: 0o644 });
  return ['hosts', 'resolv.conf', 'hostname'].map((f) => `${path.join(dir, f)}:/etc/${f}`);
}

/** resolv.conf for a CNI container: --dns, else the host's nameservers that work from a netns. */
function cniResolv(dns: string[]): string {
  if (dns.length) return dns.map((d) => `nameserver ${d}`).join('\n') + '\n';
  let text = '';
  try {
    text = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  // 127.0.0.x (systemd-resolved) is the host's own loopback: unreachable from the container.
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  return `${lines.join('\n').trim()}\n`;
}

/** Deletes the attachments and records of containers whose supervisor is gone. */
export async function gcContainers(ctx: Context): Promise<string[]> {
  const store = new ContainerStore(ctx.config.stateDir);
  const cleaned: string[] = [];
  for (const r of store.stale()) {
    if (r.network.mode === 'cni') {
      for (const a of r.network.attachments) {
        try {
          await ctx.runtime.delNetworkList(ctx.networks.get(a.network), { containerId: r.id, netns: a.netns, ifname: a.ifname });
        } catch {
          // the network itself is gone: nothing of it to delete
        }
      }
    }
    store.remove(r.id);
    cleaned.push(`${r.name} (${r.id.slice(0, 12)})`);
  }
  return cleaned;
}

/** Runs a container in the foreground; resolves to its exit status. */
export async function runContainer(o: RunOptions, configFile?: string): Promise<number> {
  const rootless = process.getuid!() !== 0;
  const network = o.network ?? (rootless ? 'usernet' : undefined);
  const ctx = await makeContext(configFile, { plugins: !rootless && !SPECIAL.includes(network ?? '') });
  const netName = network ?? ctx.config.defaultNetwork;
  // ---- validate everything before anything starts
  if (netName === 'pasta' || netName === 'slirp4netns') throw new ContainerError(`--network ${netName} is not supported yet; use --network usernet (burrow's own userspace stack)`);
  const cni = !SPECIAL.includes(netName);
  if (cni && rootless) throw new ContainerError(`rootless containers cannot join the network "${netName}": a bridge network needs root to create its veth pair and bridge in the host namespace; use --network usernet (the default when rootless), which also publishes ports with -p`);
  const list = cni ? ctx.networks.get(netName) : null;
  checkRootfs(o.rootfs);
  const ports = o.publish.flatMap((p) => parsePortSpec(p));
  if (ports.length && (netName === 'host' || netName === 'none')) throw new ContainerError(`-p needs a container network; --network ${netName} has none to publish from`);
  if (!o.cmd.length) throw new ContainerError('no command given (burrow run [OPTIONS] -- CMD [ARGS...])');
  const mode = parseUsernsMode(o.userns ?? 'host');
  const uidmaps = o.uidmap.map((s) => parseIdMapSpec(s, '--uidmap'));
  const gidmaps = o.gidmap.map((s) => parseIdMapSpec(s, '--gidmap'));
  const usernetSetup = netName === 'usernet' ? await (await import('./cmd_usernet.js')).usernetSetup({ mtu: '65520', cidr: DEFAULT_ADDRESSING.cidr4, cidr6: DEFAULT_ADDRESSING.cidr6!, ipv6: true, publish: o.publish, mapHostLoopback: o.mapHostLoopback, tap: 'eth0' }, true) : null;
  await gcContainers(ctx);

  // ---- record, start held, attach, go
  const store = new ContainerStore(ctx.config.stateDir);
  const id = ContainerStore.newId();
  const name = o.name ?? `burrow-${id.slice(0, 12)}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ContainerError(`invalid --name "${name}": letters, digits, _ . - (not first)`);
  const hostname = o.hostname ?? id.slice(0, 12);
  const record: ContainerRecord = {
    id, name, pid: process.pid, startTime: processStartTime(process.pid) ?? '', command: o.cmd, created: new Date().toISOString(),
    network: cni ? { mode: 'cni', attachments: [] } : { mode: netName as 'usernet' | 'host' | 'none' }, ports: o.publish,
  };
  const dir = store.create(record);
  let started: Started | null = null;
  let detach: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const d of detach.reverse()) {
      try {
        await d();
      } catch {
        // reported by the step itself; teardown continues
      }
    }
    detach = [];
    store.remove(id);
  };
  try {
    const plan = usernetSetup?.plan ?? planAddressing(DEFAULT_ADDRESSING);
    const ownNet = netName !== 'host';
    // The /etc files are bind-mounted after "go", so they may still change until then.
    let binds = writeEtc(dir, hostname, name, [], '', []);
    started = await startInNamespaces(o.cmd, {
      mode, uidmaps, gidmaps, rootfs: o.rootfs, stateDir: ctx.config.stateDir,
      namespaces: ['mnt', 'pid', 'uts', 'ipc', ...(ownNet ? ['net'] : [])],
      tap: usernetSetup ? usernetSetup.tapName : undefined, wantFds: ownNet, holdUntilGo: ownNet,
      root: o.rootfs ?? 'host', binds, hostname, workdir: o.workdir, env: containerEnv(o, hostname), stdio: 'inherit',
    });
    const s = started;
    detach.push(() => {
      for (const fd of [s.fds?.netns, s.fds?.userns]) if (fd !== undefined) fs.closeSync(fd);
    });
    let ips: string[] = [];
    let resolv = '';
    const extraHosts: string[] = [];
    if (usernetSetup) {
      const { startUsernet } = await import('./usernet.js');
      const session = await startUsernet(s.pid, s.fds!.tap!, usernetSetup);
      detach.push(() => session.stop());
      ips = [plan.guest4];
      resolv = `nameserver ${plan.dns4}\n${plan.dns6 ? `nameserver ${plan.dns6}\n` : ''}`;
      if (o.mapHostLoopback) extraHosts.push(`${o.mapHostLoopback}\thost.containers.internal host.docker.internal`);
    } else if (list) {
      const netns = `/proc/${process.pid}/fd/${s.fds!.netns}`;
      const attachment = { network: netName, netns, ifname: 'eth0' };
      record.network = { mode: 'cni', attachments: [attachment] };
      store.write(record);
      const rt = { containerId: id, netns, ifname: 'eth0', capabilityArgs: { ...(ports.length ? { portMappings: portMappings(ports) } : {}), ...(o.ip ? { ips: [o.ip] } : {}), ...(o.mac ? { mac: o.mac } : {}) } };
      detach.push(() => ctx.runtime.delNetworkList(list, rt));
      const result = (await ctx.runtime.addNetworkList(list, rt)) as { ips?: Array<{ address: string }> };
      ips = (result.ips ?? []).map((i) => i.address.split('/')[0]);
      resolv = cniResolv(o.dns);
    } else {
      resolv = netName === 'none' ? '' : cniResolv(o.dns);
    }
    if (o.dns.length && usernetSetup) resolv = o.dns.map((d) => `nameserver ${d}\n`).join('');
    binds = writeEtc(dir, hostname, name, ips, resolv, extraHosts);
    void binds;
    const forward = (sig: NodeJS.Signals) => s.child.kill(sig);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
    for (const sig of signals) process.on(sig, forward);
    s.go();
    const code = await s.exited;
    for (const sig of signals) process.off(sig, forward);
    return code;
  } catch (err) {
    if (started) {
      started.abort();
      started.child.kill('SIGKILL');
      await started.exited;
    }
    throw err;
  } finally {
    await cleanup();
  }
}
