/** Runs one CNI plugin binary (burrow's or the reference) inside a "host" netns, as a runtime would. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ipJson, nsExec } from './netns.js';
import { ROOT } from './burrow.js';

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

/** Execs `<binDir>/<type>` inside `hostNs` with CNI_PATH=binDir. */
export function callPlugin(hostNs: string, binDir: string, type: string, spec: CallSpec, conf: object): Promise<CallResult> {
  const env: NodeJS.ProcessEnv = {
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
