/**
 * `dhcp daemon` flags, Go's flag syntax as the reference's (-name value, -name=value, --name;
 * booleans bare or =true/false; durations as Go writes them: 10s, 1m2s, 500ms):
 * -socketpath, -pidfile (absolute), -hostprefix, -broadcast, -timeout, -resendmax, and beyond
 * the reference -resendtimeout (the whole acquisition budget, 30 s) and -leasefile.
 */
import { Daemon, DEFAULTS, type DaemonOptions } from './daemon.js';

export function parseDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(text))) {
    ms += Number(m[1]) * unit[m[2]];
    end = re.lastIndex;
  }
  if (!text || end !== text.length) throw new Error(`invalid duration "${text}" (as Go writes them: 10s, 1m30s, 500ms)`);
  return ms;
}

export function parseDaemonFlags(argv: string[]): Omit<DaemonOptions, 'log'> & { readyFd?: number } {
  const o = { ...DEFAULTS };
  let ready: number | undefined;
  const values: Record<string, (v: string) => void> = {
    socketpath: (v) => (o.socketPath = v),
    pidfile: (v) => {
      if (!v.startsWith('/')) throw new Error(`-pidfile must be an absolute path, not "${v}"`);
      o.pidfile = v;
    },
    hostprefix: (v) => (o.hostPrefix = v),
    timeout: (v) => (o.timeoutMs = parseDuration(v)),
    resendmax: (v) => (o.resendMaxMs = parseDuration(v)),
    resendtimeout: (v) => (o.acquireTimeoutMs = parseDuration(v)),
    leasefile: (v) => (o.leaseFile = v),
    readyfd: (v) => (ready = Number(v)),
  };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([a-z]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`flag provided but not defined: ${argv[i]}`);
    const [, name, inline] = m;
    if (name === 'broadcast') {
      if (inline !== undefined && !['true', 'false', '1', '0'].includes(inline)) throw new Error(`invalid boolean value "${inline}" for -broadcast`);
      o.broadcast = inline === undefined || inline === 'true' || inline === '1';
      continue;
    }
    const set = values[name];
    if (!set) throw new Error(`flag provided but not defined: -${name}`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`flag needs an argument: -${name}`);
    set(v);
  }
  return { ...o, ...(ready !== undefined ? { readyFd: ready } : {}) };
}

export async function daemonMain(argv: string[]): Promise<void> {
  let opts;
  try {
    opts = parseDaemonFlags(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = (line: string) => process.stderr.write(`${new Date().toISOString().replace('T', ' ').slice(0, 19)} ${line}\n`);
  const d = new Daemon({ ...opts, log });
  try {
    await d.start();
  } catch (err) {
    log(`error: ${(err as Error).message}`);
    process.exit(1);
  }
  log(`listening on ${d.where} (leases in ${opts.hostPrefix}${opts.leaseFile})`);
  if (opts.readyFd !== undefined) {
    // burrow run waits for this (runtime/network/dhcp_daemon.ts)
    const fs = await import('node:fs');
    fs.writeSync(opts.readyFd, 'OK\n');
    fs.closeSync(opts.readyFd);
  }
  const bye = () => void d.stop().then(() => process.exit(0));
  process.on('SIGTERM', bye);
  process.on('SIGINT', bye);
}
