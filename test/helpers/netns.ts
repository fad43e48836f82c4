/** Throwaway network namespaces for integration tests, removed on teardown. */
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { netnsCreate, netnsRemove } from '../../native/mod.js';

let counter = 0;

/** True when this process may create namespaces and links (root). */
export function privileged(): boolean {
  return process.getuid?.() === 0;
}

type Body = (t: ExecutionContext) => unknown;

/**
 * Declares a test that needs root (and, with `needs`, something else: a reason string when it is
 * missing). With what it needs, it runs. Without, in CI it fails, because a skipped test proves
 * nothing; elsewhere ava skips it explicitly (reported as skipped, never as passed) and its title
 * says why. Decided when the file loads, as ava's skips are.
 */
function declare(serial: boolean, title: string, body: Body, needs?: () => string | null): void {
  const missing = privileged() ? needs?.() ?? null : 'needs root';
  const t = serial ? test.serial : test;
  if (!missing) return void t(title, body);
  if (process.env.CI) return void t(title, (x) => x.fail(`${missing}: integration tests must run in CI, as root, with everything scripts/setup.sh installs`));
  (serial ? test.serial.skip : test.skip)(`${title} (skipped: ${missing})`, body);
}

/** A test that needs root: see {@link declare}. */
export const rootTest = Object.assign((title: string, body: Body, needs?: () => string | null) => declare(false, title, body, needs), {
  serial: (title: string, body: Body, needs?: () => string | null) => declare(true, title, body, needs),
});

/** A unique short name (netns, links) for this test process. */
export function uniqueName(prefix: string): string {
  // The separator keeps names of different test processes apart ("a"+"1b"+"c" vs "a"+"1"+"bc").
  const name = `${prefix}${process.pid.toString(36)}-${(counter++).toString(36)}`;
  if (name.length > 15) throw new Error(`netns/link name "${name}" is longer than 15 characters`);
  return name;
}

/** Creates a named netns under /run/netns and removes it when the test ends. */
export function testNetns(t: ExecutionContext, prefix = 'bt'): string {
  const path = netnsCreate(uniqueName(prefix));
  t.teardown(async () => {
    // what runs in the netns (a resident CNI service) goes first: it would keep the netns alive
    const stop = beforeRemove.get(path);
    beforeRemove.delete(path);
    await stop?.();
    netnsRemove(path);
  });
  return path;
}

const beforeRemove = new Map<string, () => Promise<void>>();

/** Runs `stop` before the test netns `path` is removed (one per netns: a later one replaces it). */
export function beforeNetnsRemoved(path: string, stop: () => Promise<void>): void {
  beforeRemove.set(path, stop);
}

/** Runs a command inside a netns (ip netns exec equivalent via nsenter) and returns stdout. */
export function nsExec(netns: string, cmd: string[], input?: string): string {
  return execFileSync('nsenter', [`--net=${netns}`, '--', ...cmd], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** `ip -j ...` inside a netns, parsed. */
export function ipJson<T = unknown>(netns: string, args: string[]): T {
  const out = nsExec(netns, ['ip', '-j', ...args]);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

/** A TCP server inside `netns` that answers every connection with the peer's address, then closes. */
export async function peerEchoServer(t: ExecutionContext, netns: string, address: string, port: number): Promise<void> {
  const { listenInNetns } = await import('../../native/mod.js');
  const net = await import('node:net');
  const fd = listenInNetns(netns, address.includes(':') ? 6 : 4, 'tcp', address, port);
  const server = net.createServer((s) => s.end(`${s.remoteAddress}`));
  server.listen({ fd });
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
}

/**
 * Connects from inside `netns` to host:port with bash's /dev/tcp and resolves to what the server
 * sent. Asynchronous, so servers running in this test process keep serving meanwhile.
 */
export function tcpRequest(netns: string, host: string, port: number, timeoutS = 5): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nsenter', [`--net=${netns}`, '--', 'timeout', String(timeoutS), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}; cat <&3`],
      { encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(`tcp ${host}:${port} from ${netns} failed: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** An "outside" netns linked to `host` by a veth: host side up0 = hostIp, outside side eth0 = outsideIp (/24), host default route via outside. */
export async function uplink(host: string, outside: string, hostIp: string, outsideIp: string): Promise<void> {
  const { RtnlClient } = await import('../../net/netlink/rtnl_client.js');
  const h = new RtnlClient(host);
  const o = new RtnlClient(outside);
  try {
    await h.addVeth('up0', 'eth0', { peerNetns: outside });
    await h.addAddress('up0', `${hostIp}/24`);
    await o.addAddress('eth0', `${outsideIp}/24`);
    for (const [c, l] of [[h, 'up0'], [h, 'lo'], [o, 'eth0'], [o, 'lo']] as const) await c.setUp(l, true);
    await h.addRoute({ dst: 'default', gateway: outsideIp });
  } finally {
    h.close();
    o.close();
  }
}
