/**
 * --network pasta and --network slirp4netns: the established tools attach to the held
 * container's namespaces as `pasta PID` and `slirp4netns PID eth0` do, with -p as their port
 * forwards, so users can compare and migrate. pasta configures the namespace and detaches
 * (its pid file names it); slirp4netns stays our child, reports ready on a pipe, and takes the
 * forwards through its API socket. Both end with the container's namespace at the latest.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { toolPath } from '../../native/system.js';
import type { PortSpec } from '../../net/ports/portspec.js';
import { callApi } from '../../net/usernet/api.js';
import { ContainerError } from '../container/containers.js';
import { readHostResolv, resolvConf } from './resolv.js';
import type { Attached, NetworkMode } from './types.js';

export type AnchorTool = 'pasta' | 'slirp4netns';

/** pasta's -t/-u lists ("none" for no forwards): [ADDR/]HOST[-END]:GUEST[-END], comma-separated. */
export function pastaForwards(ports: PortSpec[], proto: 'tcp' | 'udp'): string {
  const r = (p: number, n: number) => (n > 1 ? `${p}-${p + n - 1}` : `${p}`);
  const list = ports.filter((p) => p.proto === proto).map((p) => `${p.hostAddr ? `${p.hostAddr}/` : ''}${r(p.hostPort, p.count)}:${r(p.guestPort, p.count)}`);
  return list.length ? list.join(',') : 'none';
}

export function pastaArgs(pid: number, ports: PortSpec[], pidFile: string, mapHostLoopback: boolean): string[] {
  return ['--config-net', '--quiet', '-T', 'none', '-U', 'none', '-t', pastaForwards(ports, 'tcp'), '-u', pastaForwards(ports, 'udp'), ...(mapHostLoopback ? [] : ['--no-map-gw']), '--pid', pidFile, String(pid)];
}

export function slirpArgs(pid: number, api: string, mapHostLoopback: boolean): string[] {
  return ['--configure', '--mtu=65520', ...(mapHostLoopback ? [] : ['--disable-host-loopback']), '--api-socket', api, '--ready-fd', '3', String(pid), 'eth0'];
}

/** slirp4netns's add_hostfwd requests, one per port (it takes no ranges). */
export function slirpForwards(ports: PortSpec[]): Array<{ execute: 'add_hostfwd'; arguments: Record<string, unknown> }> {
  return ports.flatMap((p) => Array.from({ length: p.count }, (_, i) => ({ execute: 'add_hostfwd' as const, arguments: { proto: p.proto, host_addr: p.hostAddr || '0.0.0.0', host_port: p.hostPort + i, guest_port: p.guestPort + i } })));
}

export function anchorMode(tool: AnchorTool, o: { ports: PortSpec[]; readResolv?: () => string; bin?: string | null } ): NetworkMode {
  const bin = o.bin === undefined ? toolPath(tool) : o.bin;
  if (!bin) throw new ContainerError(`${tool} is not installed (apt-get install ${tool === 'pasta' ? 'passt' : 'slirp4netns'})`);
  if (tool === 'slirp4netns' && o.ports.some((p) => p.proto === 'udp' && p.hostAddr.includes(':'))) throw new ContainerError('slirp4netns forwards UDP over IPv4 only');
  const readResolv = o.readResolv ?? readHostResolv;
  return {
    kind: tool,
    ownNetns: true,
    initialRecord: () => ({ mode: tool }),
    attach: async (c, held, undo): Promise<Attached> => {
      const mapLoopback = !!c.mapHostLoopback;
      if (tool === 'pasta') {
        const pidFile = path.join(c.dir, 'pasta.pid');
        // without --foreground pasta returns once the namespace is configured, then runs detached
        const r = await new Promise<{ code: number; err: string }>((resolve) => {
          const child = spawn(bin, pastaArgs(held.pid, c.ports, pidFile, mapLoopback), { stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          child.on('error', (e) => resolve({ code: 127, err: e.message }));
          child.on('close', (code) => resolve({ code: code ?? 1, err }));
        });
        if (r.code !== 0) throw new ContainerError(`pasta failed: ${r.err.trim() || `exit ${r.code}`}`);
        undo.push('stop pasta', () => {
          try {
            process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGTERM');
          } catch {
            // pasta quits by itself when the namespace goes
          }
        });
        return { ips: [], resolv: resolvConf(c.dns, readResolv()), extraHosts: [] };
      }
      // unix socket paths are limited to 108 bytes: the state dir's short socket directory
      const api = path.join(c.stateDir, 'sock', `${c.id.slice(0, 12)}-slirp.sock`);
      fs.mkdirSync(path.dirname(api), { recursive: true, mode: 0o700 });
      const child = spawn(bin, slirpArgs(held.pid, api, mapLoopback), { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      undo.push('stop slirp4netns', () => {
        child.kill('SIGTERM');
        fs.rmSync(api, { force: true });
      });
      const ready = await new Promise<boolean>((resolve) => {
        (child.stdio[3] as NodeJS.ReadableStream).once('data', () => resolve(true));
        child.once('exit', () => resolve(false));
        child.once('error', () => resolve(false));
      });
      if (!ready) throw new ContainerError(`slirp4netns failed: ${err.trim() || 'exited before the network was ready'}`);
      for (const req of slirpForwards(c.ports)) {
        try {
          await callApi(api, req);
        } catch (e) {
          throw new ContainerError(`slirp4netns could not publish ${req.arguments.host_port}: ${(e as Error).message}`);
        }
      }
      return { ips: ['10.0.2.100'], resolv: c.dns.length ? resolvConf(c.dns, '') : 'nameserver 10.0.2.3\n', extraHosts: [] };
    },
  };
}
