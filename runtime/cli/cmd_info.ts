/**
 * `burrow version` and `burrow info`, shaped like podman's (YAML by default, --format json or a
 * Go template such as '{{.Client.Version}}' or '{{.Host.Rootless}}'), for bug reports and for
 * scripts that check what they run on: the host, the network backends found, the rootless setup
 * (subordinate ids, /dev/net/tun, the ping group range, the helpers), and burrow's stores.
 */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { ContainerError } from '../container/containers.js';
import { render, TemplateError } from './gotemplate.js';

type Out = (s: string) => void;

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/** YAML for plain data, as podman prints its info (two-space indents, "- " lists, |- for multi-line strings). */
export function toYaml(v: unknown, indent = 0): string {
  const pad = ' '.repeat(indent);
  const scalar = (x: unknown): string => {
    if (x === null || x === undefined) return 'null';
    if (typeof x === 'string') {
      if (x === '') return '""';
      return /^[\w./@%+-][\w ./:@%+,=-]*$/.test(x) && !/^(true|false|null|yes|no|[\d.]+)$/i.test(x) && !/:\s|\s$/.test(x) ? x : JSON.stringify(x);
    }
    return String(x);
  };
  if (Array.isArray(v)) {
    if (!v.length) return ' []\n';
    return `\n${v.map((x) => (x && typeof x === 'object' ? `${pad}-${toYaml(x, indent + 2).replace(/^\n\s*/, ' ')}` : `${pad}- ${scalar(x)}\n`)).join('')}`;
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (!entries.length) return ' {}\n';
    return `\n${entries.map(([k, x]) => {
      if (typeof x === 'string' && x.includes('\n')) return `${pad}${k}: |-\n${x.split('\n').map((l) => `${pad}  ${l}`).join('\n')}\n`;
      if (x && typeof x === 'object') return `${pad}${k}:${toYaml(x, indent + 2)}`;
      return `${pad}${k}: ${scalar(x)}\n`;
    }).join('')}`;
  }
  return ` ${scalar(v)}\n`;
}

function tool(toolPath: (n: string) => string | null, name: string, versionArgs: string[] = ['--version']): { Path: string; Version: string } | null {
  const p = toolPath(name);
  if (!p) return null;
  const r = spawnSync(p, versionArgs, { encoding: 'utf8', timeout: 3000 });
  return { Path: p, Version: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(0, 2).join('\n') };
}

function versionInfo(version: string): Record<string, unknown> {
  return { Version: version, NodeVersion: process.version, Os: 'linux', OsArch: `linux/${GOARCH[process.arch] ?? process.arch}` };
}

function emit(out: Out, doc: Record<string, unknown>, format: string | undefined, yaml: () => string): void {
  if (format === 'json') return out(`${JSON.stringify(doc, null, 2)}\n`);
  if (!format) return out(yaml());
  try {
    const s = render(format.replace(/\\t/g, '\t').replace(/\\n/g, '\n'), doc);
    out(s.endsWith('\n') ? s : `${s}\n`);
  } catch (err) {
    if (err instanceof TemplateError) throw new ContainerError(`template: ${err.message}`);
    throw err;
  }
}

export function infoCommands(globals: () => { config?: string }, out: Out, version: string): Command[] {
  const ver = new Command('version')
    .description('burrow\'s version (podman\'s layout; --format json or {{.Client.Version}})')
    .option('-f, --format <fmt>', 'json or a Go template')
    .action((o: { format?: string }) => {
      const client = versionInfo(version);
      emit(out, { Client: client }, o.format, () => [
        ['Client:', 'burrow'], ['Version:', version], ['Node Version:', process.version], ['OS/Arch:', client.OsArch as string],
      ].map(([k, v]) => `${k.padEnd(14)}${v}\n`).join(''));
    });
  const info = new Command('info')
    .description('the host, network backends, rootless setup and stores burrow sees (for bug reports)')
    .option('-f, --format <fmt>', 'json or a Go template ({{.Host.Rootless}}, {{.Store.VolumePath}}...)')
    .action(async (o: { format?: string }) => {
      const { toolPath } = await import('../../native/system.js');
      const { loadConfig } = await import('../config.js');
      const { ContainerStore, PodStore } = await import('../container/containers.js');
      const { VolumeStore } = await import('../container/volumes.js');
      const config = loadConfig(globals().config);
      const uid = process.getuid!();
      const user = os.userInfo().username;
      const osRelease = Object.fromEntries(read('/etc/os-release').split('\n').map((l) => l.split('=')).filter((p) => p.length >= 2).map(([k, ...v]) => [k, v.join('=').replace(/^"|"$/g, '')]));
      const subids = (file: string) => read(file).split('\n').filter((l) => l.startsWith(`${user}:`) || l.startsWith(`${uid}:`)).map((l) => {
        const [, start, size] = l.split(':');
        return { start: Number(start), size: Number(size) };
      });
      const tun = (() => {
        try {
          const st = fs.statSync('/dev/net/tun');
          return { Present: true, Mode: `0${(st.mode & 0o777).toString(8)}` };
        } catch {
          return { Present: false, Mode: '' };
        }
      })();
      const setuid = (p: string | null) => {
        try {
          return !!p && (fs.statSync(p).mode & 0o4000) !== 0;
        } catch {
          return false;
        }
      };
      const s = new ContainerStore(config.stateDir);
      const all = s.list();
      const live = all.filter((r) => r.state === 'running' && ContainerStore.alive(r)).length;
      const cgroup2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
      const doc = {
        Host: {
          Arch: GOARCH[process.arch] ?? process.arch, Kernel: os.release(), Os: 'linux', Hostname: os.hostname(), Cpus: os.cpus().length,
          MemTotal: os.totalmem(), MemFree: os.freemem(), Uptime: `${Math.floor(os.uptime())}s`,
          Distribution: { Distribution: osRelease.ID ?? '', Version: osRelease.VERSION_ID ?? '', Codename: osRelease.VERSION_CODENAME ?? '' },
          CgroupVersion: cgroup2 ? 'v2' : 'v1', Rootless: uid !== 0, Uid: uid, User: user,
          IdMappings: uid === 0 ? null : { UidMap: subids('/etc/subuid'), GidMap: subids('/etc/subgid') },
          Security: { Rootless: uid !== 0, UserNamespaces: read('/proc/sys/user/max_user_namespaces') !== '0', SeccompEnabled: false, SelinuxEnabled: false, ApparmorEnabled: false },
          LogDriver: 'k8s-file',
        },
        Network: {
          FirewallBackend: config.firewallBackend, CniConfigDir: config.cniConfigDir, CniPath: config.cniPath, PluginMode: config.pluginMode,
          Iptables: tool(toolPath, 'iptables'), Nftables: tool(toolPath, 'nft'), Pasta: tool(toolPath, 'pasta'), Slirp4netns: tool(toolPath, 'slirp4netns'),
        },
        Rootless: {
          Tun: tun, PingGroupRange: read('/proc/sys/net/ipv4/ping_group_range').replace(/\s+/, ' '), UnprivilegedPortStart: Number(read('/proc/sys/net/ipv4/ip_unprivileged_port_start') || 1024),
          Newuidmap: { Path: toolPath('newuidmap') ?? '', Setuid: setuid(toolPath('newuidmap')) }, Newgidmap: { Path: toolPath('newgidmap') ?? '', Setuid: setuid(toolPath('newgidmap')) },
        },
        Store: {
          ConfigFile: config.source ?? '', StateDir: config.stateDir, VolumePath: config.volumePath,
          ContainerStore: { Number: all.length, Running: live, Stopped: all.length - live }, Pods: new PodStore(config.stateDir).list().length, Volumes: new VolumeStore(config.volumePath).list().length,
        },
        Version: versionInfo(version),
      };
      emit(out, doc, o.format, () => toYaml(doc).replace(/^\n/, ''));
    });
  return [ver, info];
}
