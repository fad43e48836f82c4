/**
 * `dnsname serve`: the one DNS server of a host (or of a rootless user, inside the user's network
 * namespace), for every network whose records are under `--root`.
 *
 * It reads every record file, binds the gateways, writes `server.json`, listens on
 * `control.sock`, and then writes on the ready fd. Requests on the control socket are one line
 * each: `reload` (re-read the files; the answer says what is bound and comes after the new
 * gateways are), `status` (counters). SIGHUP reloads too, as aardvark-dns does. When a reload
 * finds no record left it closes everything, answers `exiting`, and exits: the writer holds the
 * records lock across its reload, so the next writer finds no server and starts one. SIGTERM
 * exits at once. The forwarders are `--forward` addresses, or the nameservers of
 * `--resolv-conf` (default $BURROW_RESOLV_CONF or /etc/resolv.conf), re-read on every reload.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { processLive, processStartTime } from '../../native/system.js';
import { RecordSet } from '../../net/dns/records.js';
import { DnsServer, resolvConfServers } from '../../net/dns/server.js';
import { readAllRecords, type DnsPaths, type ReloadReply } from './control.js';

export interface ServeArgs {
  root: string;
  readyFd?: number;
  forward: string[];
  resolvConf: string;
  port?: number;
  /** Stay when no record is left (tests, and a server started by hand). */
  stay?: boolean;
  /** pid:starttime of a process whose exit ends the server (a rootless user's namespace holder). */
  holder?: { pid: number; startTime: string };
}

/** Parses `serve`'s flags. Throws with the flag named. */
export function parseServeArgs(argv: string[]): ServeArgs {
  const a: ServeArgs = { root: '/run/containers/cni', forward: [], resolvConf: process.env.BURROW_RESOLV_CONF || '/etc/resolv.conf' };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${f} needs a value`);
      return v;
    };
    if (f === '--root') a.root = val();
    else if (f === '--ready-fd') a.readyFd = Number(val());
    else if (f === '--forward') {
      const v = val();
      if (!net.isIP(v)) throw new Error(`--forward ${v}: not an IP address`);
      a.forward.push(v);
    } else if (f === '--resolv-conf') a.resolvConf = val();
    else if (f === '--port') a.port = Number(val());
    else if (f === '--stay') a.stay = true;
    else if (f === '--holder') {
      const v = val();
      const sep = v.indexOf(':');
      if (sep < 1 || !Number.isInteger(Number(v.slice(0, sep)))) throw new Error(`--holder ${v}: expected PID:STARTTIME`);
      a.holder = { pid: Number(v.slice(0, sep)), startTime: v.slice(sep + 1) };
    }
    else throw new Error(`unknown flag ${f} (dnsname serve [--root DIR] [--forward IP]... [--resolv-conf FILE] [--port N] [--ready-fd FD] [--holder PID:START] [--stay])`);
  }
  return a;
}

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} dnsname[${process.pid}]: ${msg}\n`);
}

export async function serve(a: ServeArgs): Promise<void> {
  const p: DnsPaths = { root: a.root, records: path.join(a.root, 'dnsname'), server: path.join(a.root, 'burrow-dns') };
  fs.mkdirSync(p.server, { recursive: true, mode: 0o755 });
  let servers: string[] = [];
  const readServers = () => {
    if (a.forward.length) return a.forward;
    try {
      return resolvConfServers(fs.readFileSync(a.resolvConf, 'utf8'));
    } catch {
      return [];
    }
  };
  const dns = new DnsServer({ port: a.port, hostServers: () => servers, log });
  let control: net.Server | null = null;
  const sock = path.join(p.server, 'control.sock');

  const exit = async (why: string) => {
    log(`exiting: ${why}`);
    control?.close();
    control = null;
    await dns.close();
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(p.server, 'server.json'), 'utf8')) as { pid: number };
      if (rec.pid === process.pid) fs.rmSync(path.join(p.server, 'server.json'), { force: true });
    } catch {
      // gone already
    }
  };

  const reload = async (): Promise<ReloadReply> => {
    servers = readServers();
    const { networks, errors } = readAllRecords(p);
    for (const e of errors) log(e);
    const set = new RecordSet(networks);
    if (!set.size() && !a.stay) {
      await exit('no records left');
      return { ok: true, records: 0, exiting: true };
    }
    const pending = await dns.load(set);
    return { ok: true, records: set.size(), bound: dns.bound(), pending };
  };

  const first = await reload();
  if (first.exiting) return;
  try {
    fs.unlinkSync(sock); // a killed server's
  } catch {
    // none
  }
  control = net.createServer((c) => {
    let buf = '';
    c.on('error', () => c.destroy());
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.length > 4096) return void c.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const cmd = buf.slice(0, nl).trim();
      const answer = (r: ReloadReply) => c.end(`${JSON.stringify(r)}\n`);
      if (cmd === 'reload') {
        reload().then(answer, (err: Error) => answer({ ok: false, error: err.message })).then(() => {
          if (!control) process.exit(0);
        });
      } else if (cmd === 'status') answer({ ok: true, records: dns.records.size(), bound: dns.bound(), counters: Object.fromEntries(dns.counters) });
      else answer({ ok: false, error: `unknown request ${JSON.stringify(cmd.slice(0, 40))} (reload, status)` });
    });
  });
  await new Promise<void>((resolve, reject) => {
    control!.once('error', reject);
    control!.listen(sock, () => resolve());
  });
  fs.chmodSync(sock, 0o600);
  const tmp = path.join(p.server, `server.json.${process.pid}`);
  fs.writeFileSync(tmp, `${JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid) })}\n`);
  fs.renameSync(tmp, path.join(p.server, 'server.json'));
  process.on('SIGHUP', () => {
    reload().then((r) => {
      log(`reloaded on SIGHUP: ${r.records} records`);
      if (r.exiting) process.exit(0);
    }, (err: Error) => log(`reload failed: ${err.message}`));
  });
  if (a.holder) {
    const h = a.holder;
    setInterval(() => {
      if (!processLive(h.pid, h.startTime)) void exit('the namespace\'s holder is gone').then(() => process.exit(0));
    }, 1000).unref();
    // unref'd: the sockets keep the process alive, the check does not
  }
  process.on('SIGTERM', () => void exit('SIGTERM').then(() => process.exit(0)));
  process.on('SIGINT', () => void exit('SIGINT').then(() => process.exit(0)));
  log(`serving ${first.records} records on ${(first.bound ?? []).join(', ') || 'no address yet'}${first.pending?.length ? ` (waiting for ${first.pending.map((x) => x.ip).join(', ')})` : ''}; forwarding to ${servers.join(', ') || 'nobody'}`);
  if (a.readyFd !== undefined) {
    try {
      fs.writeSync(a.readyFd, '1');
      fs.closeSync(a.readyFd);
    } catch {
      // the starter went away; serve anyway
    }
  }
}
