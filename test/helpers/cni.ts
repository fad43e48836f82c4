/** Runs one CNI plugin binary (burrow's or the reference) inside a "host" netns, as a runtime would. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeNetnsRemoved, ipJson, nsExec } from './netns.js';
import { CLI, ROOT } from './burrow.js';

export const OWN_BIN = path.join(ROOT, 'plugins', 'bin');
export const REF_BIN = '/usr/lib/cni';

export interface CallSpec {
  command: string;
  containerId: string;
  netns: string;
  ifname?: string;
  args?: string;
}

export interface CallResult {
  code: number;
  out: Record<string, unknown>;
  raw: string;
  stderr: string;
}

/**
 * How burrow's own plugins (binDir OWN_BIN) are called: "cold" execs the script launchers (Node per
 * call); BURROW_TEST_CNI=resident execs the native launchers that `burrow cni install` writes, with
 * a `burrow cni serve` running in the calling host netns, and fails the call unless the service
 * served it (scripts/test.sh runs the plugin suites both ways).
 */
export const OWN_VIA: 'cold' | 'resident' = process.env.BURROW_TEST_CNI === 'resident' ? 'resident' : 'cold';

/** The native launchers, installed once per test process (the socket is set per call). */
let launchers: string | undefined;
export function residentLaunchers(): string {
  if (launchers) return launchers;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-launchers-'));
  const r = spawnSync(process.execPath, [CLI, 'cni', 'install', '--dir', dir, '--socket', 'off'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`burrow cni install: ${r.stderr}`);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  launchers = dir;
  return dir;
}

export interface ResidentService {
  socket: string;
  child: ChildProcess;
  /** What it has logged so far (one line per call). */
  log(): string;
}

const services = new Map<string, Promise<ResidentService>>();

/**
 * `burrow cni serve` inside `hostNs` (one per netns, stopped before the netns is removed; a worker
 * killed before its teardown leaves one that goes by itself after 2 idle minutes).
 */
export function residentService(hostNs: string): Promise<ResidentService> {
  let s = services.get(hostNs);
  if (s) return s;
  s = (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-serve-'));
    const socket = path.join(dir, 'cni.sock');
    const logFile = path.join(dir, 'serve.log');
    const fd = fs.openSync(logFile, 'a');
    const child = spawn('nsenter', [`--net=${hostNs}`, '--', process.execPath, CLI, 'cni', 'serve', '--socket', socket, '--idle', '120'], { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const log = () => fs.readFileSync(logFile, 'utf8');
    for (let i = 0; !log().includes('serves CNI calls'); i++) {
      if (child.exitCode !== null || i > 200) throw new Error(`burrow cni serve did not start: ${log()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    beforeNetnsRemoved(hostNs, async () => {
      services.delete(hostNs);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return { socket, child, log };
  })();
  services.set(hostNs, s);
  return s;
}

/** Execs `<binDir>/<type>` inside `hostNs` with CNI_PATH=binDir (burrow's own: see OWN_VIA). */
export async function callPlugin(hostNs: string, binDir: string, type: string, spec: CallSpec, conf: object): Promise<CallResult> {
  if (binDir !== OWN_BIN || OWN_VIA === 'cold') return execPlugin(hostNs, binDir, type, spec, conf);
  const svc = await residentService(hostNs);
  const line = `${spec.command} ${type} ${spec.containerId} ${spec.ifname ?? 'eth0'}: exit`;
  const count = () => svc.log().split(line).length - 1;
  const before = count();
  const r = await execPlugin(hostNs, residentLaunchers(), type, spec, conf, { BURROW_CNI_SOCKET: svc.socket });
  if (count() === before) throw new Error(`the resident service did not serve ${type} ${spec.command} ${spec.containerId}:\n${svc.log().split('\n').slice(-5).join('\n')}`);
  return r;
}

/** Execs `<binDir>/<type>` inside `hostNs` with CNI_PATH=binDir. */
export function execPlugin(hostNs: string, binDir: string, type: string, spec: CallSpec, conf: object, extraEnv: Record<string, string> = {}): Promise<CallResult> {
  const env: NodeJS.ProcessEnv = {
    ...extraEnv,
    PATH: process.env.PATH,
    CNI_COMMAND: spec.command,
    CNI_CONTAINERID: spec.containerId,
    CNI_NETNS: spec.netns,
    CNI_IFNAME: spec.ifname ?? 'eth0',
    CNI_ARGS: spec.args ?? '',
    CNI_PATH: binDir,
  };
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${hostNs}`, '--', path.join(binDir, type)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const raw = Buffer.concat(out).toString();
      let parsed: Record<string, unknown> = {};
      try {
        parsed = raw.trim() ? JSON.parse(raw) : {};
      } catch {
        parsed = { unparsable: raw };
      }
      resolve({ code: code ?? -1, out: parsed, raw, stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

/** A comparable snapshot of a host netns: links (kind, master, flags), addresses, routes, nat/filter rules. */
export function hostSnapshot(ns: string, opts: { vethNames?: boolean } = {}): Record<string, unknown> {
  type L = { ifname: string; link_type?: string; master?: string; flags: string[]; mtu: number; linkinfo?: { info_kind?: string } };
  const norm = (n: string) => (!opts.vethNames && /^veth[0-9a-f]{8}$/.test(n) ? 'vethX' : n);
  const links = ipJson<L[]>(ns, ['-d', 'link']).map((l) => `${norm(l.ifname)} ${l.linkinfo?.info_kind ?? l.link_type} mtu=${l.mtu} master=${l.master ?? '-'} ${l.flags.filter((f) => f === 'UP').join(',')}`).sort();
  type A = { ifname: string; addr_info: { local: string; prefixlen: number; scope: string }[] };
  const addrs = ipJson<A[]>(ns, ['addr']).flatMap((l) => l.addr_info.filter((a) => a.scope !== 'link').map((a) => `${norm(l.ifname)} ${a.local}/${a.prefixlen}`)).sort();
  type R = { dst: string; gateway?: string; dev?: string };
  const routes = [...ipJson<R[]>(ns, ['route']), ...ipJson<R[]>(ns, ['-6', 'route'])]
    .filter((r) => !r.dst.startsWith('fe80') && !r.dst.startsWith('ff00')).map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${norm(r.dev ?? '-')}`).sort();
  const rules = (table: string, tool = 'iptables-save') => nsExec(ns, [tool, '-t', table]).split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':')).map((l) => l.replace(/\[\d+:\d+\]/, '')).sort();
  type P = { ifname: string; master?: string; hairpin?: boolean; isolated?: boolean; learning?: boolean };
  const ports = JSON.parse(nsExec(ns, ['bridge', '-d', '-j', 'link', 'show']) || '[]') as P[];
  const portFlags = ports.map((p) => `${norm(p.ifname)} master=${p.master} hairpin=${p.hairpin} isolated=${p.isolated}`).sort();
  return { links, addrs, routes, ports: portFlags, nat4: rules('nat'), nat6: rules('nat', 'ip6tables-save'), filter4: rules('filter') };
}

/** The files of a host-local store: name -> content. */
export function storeFiles(dir: string): Record<string, string> {
  if (!fs.existsSync(dir)) return {};
  return Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
}

/** The result with MACs and host veth names made comparable. */
export function normalizeResult(r: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(r).replace(/"mac":"[0-9a-f:]{17}"/g, '"mac":"MAC"').replace(/veth[0-9a-f]{8}/g, 'vethX').replace(/"sandbox":"[^"]*"/g, '"sandbox":"NETNS"'));
}
