/**
 * `aardvark-dns`, burrow's drop-in: aardvark-dns 1.4's command line, config directory, pid file
 * and reload rules, served by burrow's DNS server (net/dns/server.ts). netavark (Debian's, or
 * burrow's) starts it as `aardvark-dns --config <rundir>/aardvark-dns -p <port> run`.
 *
 * Theory of operation
 * -------------------
 * - `run` forks as aardvark-dns does: the parent starts a detached copy of this program (its own
 *   session, stdio on /dev/null, because netavark's stdout is podman's result pipe) and exits 0
 *   when the copy says `ready` on a pipe, or 1 with the copy's error. The copy says ready only
 *   once it has written its pid file and bound every gateway it could, so a query sent after
 *   netavark returns is answered (aardvark 1.4 says ready before binding).
 * - The config directory holds one file per network (the file name is the network's; `%int`
 *   marks an internal network, whose unknown names are not forwarded) and `aardvark.pid`, the
 *   bare pid. Files are read under a shared flock on `<config>/../aardvark.lock`, the lock
 *   netavark holds while it writes them. A file that cannot be parsed keeps the records it had
 *   (a half-written file never empties a network) and is logged.
 * - SIGHUP re-reads the directory; when no network file is left the server removes its pid
 *   file and exits 0. SIGTERM and SIGINT exit at once.
 * - Answers: the networks of the requester's source address; the `-f` suffix (default
 *   `.dns.podman`) is stripped; names that are not local go to the requester's, then the
 *   network's, then the host's resolvers (`/etc/resolv.conf`, re-read on every reload), unless
 *   `AARDVARK_NO_PROXY` is set or the network is internal. UDP and TCP, as aardvark-dns 1.12.
 * - Logging: silent unless `BURROW_AARDVARK_LOG=FILE` names a file for the daemon's log.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { constants, flock } from '../../native/mod.js';
import { parseRecordFile, RecordSet, type NetworkRecords } from '../../net/dns/records.js';
import { DnsServer, resolvConfServers } from '../../net/dns/server.js';
import { VERSION } from '../version.js';

export const AARDVARK_VERSION = '1.4.0';
export const PID_FILE = 'aardvark.pid';
const INTERNAL_SUFFIX = '%int';
const DEFAULT_PORT = 5533;
const DAEMON_ENV = 'BURROW_AARDVARK_DAEMON';

export interface AardvarkArgs {
  command: 'run' | 'version' | 'help' | 'version-flag';
  config: string;
  port: number;
  /** the search domain stripped from names, without its leading dot */
  domain: string;
  /** the subcommand whose help was asked (`help run`, `run --help`) */
  helpOf?: 'run' | 'version';
}

/** A command-line error, reported as clap reports it (exit status 2). */
export class UsageError extends Error {}

export const HELP = `aardvark-dns ${AARDVARK_VERSION} (burrow ${VERSION})

USAGE:
    aardvark-dns [OPTIONS] <SUBCOMMAND>

OPTIONS:
    -c, --config <CONFIG>
            Path to configuration directory

    -f, --filter-search-domain <FILTER_SEARCH_DOMAIN>
            Filters search domain for backward compatiblity with dnsname/dnsmasq

    -h, --help
            Print help information

    -p, --port <PORT>
            Host port for aardvark servers, defaults to ${DEFAULT_PORT}

    -V, --version
            Print version information

SUBCOMMANDS:
    help       Print this message or the help of the given subcommand(s)
    run        Runs the aardvark dns server with the specified configuration directory
    version    Display info about aardvark
`;

const SUB_HELP: Record<'run' | 'version', string> = {
  run: `aardvark-dns-run \nRuns the aardvark dns server with the specified configuration directory\n\nUSAGE:\n    aardvark-dns run\n\nOPTIONS:\n    -h, --help    Print help information\n`,
  version: `aardvark-dns-version \nDisplay info about aardvark\n\nUSAGE:\n    aardvark-dns version\n\nOPTIONS:\n    -h, --help    Print help information\n`,
};

const usageTail = '\n\nUSAGE:\n    aardvark-dns [OPTIONS] <SUBCOMMAND>\n\nFor more information try --help';

/** Parses aardvark-dns 1.4's command line (clap's forms: `-c X`, `-cX`, `--config X`, `--config=X`). */
export function parseArgs(argv: string[]): AardvarkArgs {
  const a: AardvarkArgs = { command: 'help', config: '/dev/stdin', port: DEFAULT_PORT, domain: 'dns.podman' };
  let sub: AardvarkArgs['command'] | null = null;
  const takes: Record<string, 'config' | 'port' | 'filter'> = { '-c': 'config', '--config': 'config', '-p': 'port', '--port': 'port', '-f': 'filter', '--filter-search-domain': 'filter' };
  const names = { config: '--config <CONFIG>', port: '--port <PORT>', filter: '--filter-search-domain <FILTER_SEARCH_DOMAIN>' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let flag = arg;
    let value: string | undefined;
    if (arg.startsWith('--') && arg.includes('=')) [flag, value] = [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)];
    else if (/^-[cpf]./.test(arg)) [flag, value] = [arg.slice(0, 2), arg.slice(2)];
    const key = takes[flag];
    if (key) {
      if (value === undefined) value = argv[++i];
      if (value === undefined) throw new UsageError(`error: The argument '${names[key]}' requires a value but none was supplied${usageTail}`);
      if (key === 'config') a.config = value;
      else if (key === 'filter') a.domain = value.replace(/^\./, '').replace(/\.$/, '').toLowerCase();
      else {
        if (!/^\d+$/.test(value) || Number(value) > 65535) throw new UsageError(`error: Invalid value "${value}" for '${names.port}': ${/^\d+$/.test(value) ? 'number too large to fit in target type' : 'invalid digit found in string'}\n\nFor more information try --help`);
        a.port = Number(value);
      }
    } else if (arg === '-h' || arg === '--help') {
      a.command = 'help';
      if (sub === 'run' || sub === 'version') a.helpOf = sub;
      return a;
    } else if (arg === '-V' || arg === '--version') {
      a.command = 'version-flag';
      return a;
    } else if (!sub && (arg === 'run' || arg === 'version' || arg === 'help')) {
      sub = arg;
      if (arg === 'help') {
        const of = argv[i + 1];
        if (of === 'run' || of === 'version') a.helpOf = of;
        else if (of !== undefined && of !== 'help') throw new UsageError(`error: The subcommand '${of}' wasn't recognized${usageTail}`);
        a.command = 'help';
        return a;
      }
    } else {
      throw new UsageError(`error: Found argument '${arg}' which wasn't expected, or isn't valid in this context${usageTail}`);
    }
  }
  if (!sub) throw new UsageError(`error: 'aardvark-dns' requires a subcommand but one was not provided${usageTail}`);
  a.command = sub;
  return a;
}

/** `aardvark-dns version`'s JSON, with burrow's version as the commit. */
export function versionJson(): string {
  return `${JSON.stringify({ version: AARDVARK_VERSION, commit: `burrow ${VERSION}`, build_time: '', target: `${process.arch === 'x64' ? 'x86_64' : process.arch}-unknown-linux-gnu` }, null, 2)}\n`;
}

/**
 * Reads every network file of `dir`. A file that cannot be parsed keeps `previous`'s records of
 * that network and is named in `errors`. `files` counts the network files, parsable or not.
 */
export function readConfigDir(dir: string, previous: Map<string, NetworkRecords>, o: { domain: string; noProxy: boolean }): { networks: Map<string, NetworkRecords>; files: number; errors: string[] } {
  const networks = new Map<string, NetworkRecords>();
  const errors: string[] = [];
  let files = 0;
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    errors.push(`cannot read ${dir}: ${(err as Error).message}`);
  }
  for (const e of entries.sort((x, y) => (x.name < y.name ? -1 : 1))) {
    if (!e.isFile() || e.name === PID_FILE || e.name.startsWith('.')) continue;
    files++;
    const internal = e.name.endsWith(INTERNAL_SUFFIX);
    const network = internal ? e.name.slice(0, -INTERNAL_SUFFIX.length) : e.name;
    try {
      const r = parseRecordFile(network, fs.readFileSync(path.join(dir, e.name), 'utf8'));
      for (const s of r.skipped) errors.push(`network ${network}: skipped a bad line: ${s}`);
      networks.set(e.name, { network, gateways: r.gateways, servers: r.servers, domain: o.domain, entries: r.entries, noForward: internal || o.noProxy });
    } catch (err) {
      errors.push(`${(err as Error).message} (file ${e.name}; keeping its previous records)`);
      const old = previous.get(e.name);
      if (old) networks.set(e.name, old);
    }
  }
  return { networks, files, errors };
}

/** Runs the command; resolves with the exit status (the daemon resolves only when it stops). */
export async function main(argv: string[]): Promise<number> {
  let a: AardvarkArgs;
  try {
    a = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  if (a.command === 'help') {
    process.stdout.write(a.helpOf ? SUB_HELP[a.helpOf] : HELP);
    return 0;
  }
  if (a.command === 'version-flag') {
    process.stdout.write(`aardvark-dns ${AARDVARK_VERSION}\n`);
    return 0;
  }
  if (a.command === 'version') {
    process.stdout.write(versionJson());
    return 0;
  }
  return process.env[DAEMON_ENV] === '1' ? daemon(a) : startDaemon(argv);
}

/** The parent half of the fork: starts the daemon and waits for its word. */
async function startDaemon(argv: string[]): Promise<number> {
  const r = await spawnDaemon(process.argv[1], argv);
  if (r.ok) return 0;
  process.stderr.write(`Error: ${r.error}\n`);
  return 1;
}

/** True when `file` is burrow's aardvark-dns (bin/compat, or a launcher `burrow compat install` wrote). */
export function isBurrowAardvark(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(512);
      const n = fs.readSync(fd, buf, 0, 512, 0);
      return buf.subarray(0, n).includes('dist/compat/aardvark-dns.cjs');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Starts the daemon of `script` (this program's launcher) detached, with `argv` (`... run`), and
 * resolves once it says ready or fails. burrow's netavark calls this directly, saving the
 * intermediate process a start through the binary costs (one Node start, ~60 ms).
 */
export async function spawnDaemon(script: string, argv: string[]): Promise<{ ok: true } | { ok: false; error: string }> {
  const logFile = process.env.BURROW_AARDVARK_LOG;
  const out = logFile ? fs.openSync(logFile, 'a', 0o600) : 'ignore';
  const child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
    detached: true,
    stdio: ['ignore', out, out, 'pipe'],
    env: { ...process.env, [DAEMON_ENV]: '1' },
  });
  if (typeof out === 'number') fs.closeSync(out);
  const said = await new Promise<string>((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.on('data', (d: Buffer) => (text += d.toString()));
    pipe.on('end', () => resolve(text));
    pipe.on('error', () => resolve(text));
  });
  if (said.startsWith('ready')) {
    child.unref();
    return { ok: true };
  }
  child.kill('SIGKILL');
  return { ok: false, error: said.replace(/^error: /, '').trim() || 'the aardvark-dns server exited before it was ready' };
}

/** The daemon: serves until SIGTERM or until no network file is left. */
async function daemon(a: AardvarkArgs): Promise<number> {
  let ready: number | null = 3;
  const tell = (s: string) => {
    if (ready === null) return;
    try {
      fs.writeSync(ready, s);
      fs.closeSync(ready);
    } catch {
      // the starter is gone
    }
    ready = null;
  };
  const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} aardvark-dns[${process.pid}]: ${msg}\n`);
  const config = path.resolve(a.config);
  const pidFile = path.join(config, PID_FILE);
  const lockFile = path.join(path.dirname(config), 'aardvark.lock');
  const noProxy = process.env.AARDVARK_NO_PROXY !== undefined;
  const resolvConf = process.env.BURROW_RESOLV_CONF || '/etc/resolv.conf';
  let hostServers: string[] = [];
  const dnsServer = new DnsServer({ port: a.port, hostServers: () => hostServers, log });
  let current = new Map<string, NetworkRecords>();
  let stopping = false;

  const stop = async (why: string, code: number): Promise<never> => {
    stopping = true;
    log(`exiting: ${why}`);
    try {
      if (fs.readFileSync(pidFile, 'utf8').trim() === String(process.pid)) fs.rmSync(pidFile, { force: true });
    } catch {
      // gone already
    }
    await dnsServer.close();
    process.exit(code);
  };

  /** Re-reads the directory under the shared lock; false when no network file is left. */
  const reload = async (): Promise<boolean> => {
    let fd: number | null = null;
    try {
      fd = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
      await flock(fd, constants().LOCK_SH);
    } catch (err) {
      log(`cannot lock ${lockFile}: ${(err as Error).message} (reading without it)`);
    }
    let read;
    try {
      read = readConfigDir(config, current, { domain: a.domain, noProxy });
    } finally {
      if (fd !== null) fs.closeSync(fd);
    }
    for (const e of read.errors) log(e);
    if (!read.files) return false;
    try {
      hostServers = resolvConfServers(fs.readFileSync(resolvConf, 'utf8'));
    } catch {
      hostServers = [];
    }
    current = read.networks;
    const pending = await dnsServer.load(new RecordSet([...current.values()]));
    for (const p of pending) log(`cannot listen on ${p.ip} port ${a.port} yet: ${p.error}`);
    log(`loaded ${current.size} networks, ${[...current.values()].reduce((n, r) => n + r.entries.length, 0)} records; listening on ${dnsServer.bound().join(', ') || 'nothing yet'}`);
    return true;
  };

  // the handlers come before the pid file: netavark signals the pid it finds there at once, and
  // SIGHUP's default action would kill the server. One reload at a time; a SIGHUP during one runs
  // another after it (the files may have changed again).
  let chain: Promise<unknown> = Promise.resolve();
  const onHup = () => {
    chain = chain.then(async () => {
      if (stopping) return;
      if (!(await reload())) await stop('no network files left', 0);
      else log('reloaded on SIGHUP');
    }).catch((err: Error) => log(`reload failed: ${err.message}`));
  };
  process.on('SIGHUP', onHup);
  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  process.on('SIGINT', () => void stop('SIGINT', 0));
  try {
    fs.mkdirSync(config, { recursive: true });
    fs.writeFileSync(pidFile, String(process.pid));
    const first = reload();
    chain = first;
    if (!(await first)) {
      tell('ready');
      return await stop('no network files', 0);
    }
  } catch (err) {
    tell(`error: ${(err as Error).message}`);
    return stop(`start failed: ${(err as Error).message}`, 1);
  }
  tell('ready');
  return new Promise<number>(() => {});
}
