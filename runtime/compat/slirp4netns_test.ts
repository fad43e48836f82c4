import test from 'ava';
import { parseSlirpArgs, sandboxArgs, slirpSetup, SlirpUsageError, USAGE, type SlirpArgs } from './slirp4netns.js';

const run = (argv: string[]): SlirpArgs => {
  const p = parseSlirpArgs(argv);
  if (p.kind !== 'run') throw new Error(`parsed as ${p.kind}`);
  return p.args;
};

test('slirp4netns args: podman 4.3.1\'s and podman 5\'s argv, getopt_long\'s forms, slirp4netns\'s defaults', (t) => {
  const p4 = run(['--disable-host-loopback', '--mtu=65520', '--enable-ipv6', '-c', '-e', '3', '-r', '4', '--api-socket', '/tmp/x.net', '--netns-type=path', '/', 'tap0']);
  t.like(p4, { disableHostLoopback: true, mtu: 65520, ipv6: true, configure: true, exitFd: 3, readyFd: 4, apiSocket: '/tmp/x.net', netnsType: 'path', target: '/', tap: 'tap0' });
  t.like(run(['-c', '-r', '3', '-e', '4', '--netns-type=path', '/', 'tap0']), { readyFd: 3, exitFd: 4 }, 'podman 5 passes -r 3 -e 4');
  t.like(run(['-ce3', '-r4', '-m', '9000', '-6', '1234']), { configure: true, exitFd: 3, readyFd: 4, mtu: 9000, ipv6: true, target: '1234', tap: 'tap0' });
  t.like(run(['1234', 'tap1', '--config', '--disable-h']), { configure: true, disableHostLoopback: true, tap: 'tap1' }, 'options after operands, unique prefixes');
  t.like(run(['1']), { mtu: 1500, ipv6: false, cidr: '10.0.2.0/24', disableHostLoopback: false, configure: false });
  t.like(run(['--outbound-addr=192.0.2.1', '--outbound-addr6', '2001:db8::1', '--disable-dns', '-c', '--macaddress=02:00:00:00:00:01', '--cidr=10.5.0.0/16', '1']), { outbound4: '192.0.2.1', outbound6: '2001:db8::1', disableDns: true, mac: '02:00:00:00:00:01', cidr: '10.5.0.0/16' });
  t.deepEqual(parseSlirpArgs(['--help', 'x']), { kind: 'help' });
  t.deepEqual(parseSlirpArgs(['-v']), { kind: 'version' });
});

test('slirp4netns args: slirp4netns\'s error texts, and clear ones where burrow differs', (t) => {
  const err = (argv: string[]) => t.throws(() => parseSlirpArgs(argv), { instanceOf: SlirpUsageError })!.message;
  t.is(err(['--mtu=70000', '1']), 'MTU must be a positive integer (< 65522)');
  t.is(err(['--mtu=x', '1']), 'MTU must be a positive integer (< 65522)');
  t.regex(err(['--mtu=576', '1']), /burrow's stack takes 1280 to 65520/);
  t.is(err(['--cidr=10.0.2.0/26', '1']), 'prefix length needs to be 1-25');
  t.is(err(['--cidr=foo', '1']), 'invalid CIDR: foo');
  t.is(err(['--bogus', '1']), 'slirp4netns: unrecognized option \'--bogus\'');
  t.is(err(['-x', '1']), 'slirp4netns: invalid option -- \'x\'');
  t.is(err(['-e']), 'slirp4netns: option requires an argument -- \'e\'');
  t.is(err(['--exit-fd']), 'slirp4netns: option \'--exit-fd\' requires an argument');
  t.regex(err(['--enable', '1']), /option '--enable' is ambiguous; possibilities: '--enable-ipv6' '--enable-sandbox' '--enable-seccomp'/);
  t.is(err(['-e', 'x', '1']), 'exit-fd must be a non-negative integer');
  t.is(err([]), '', 'no operand: the usage alone');
  t.regex(err(['abc']), /PID must be a positive integer/);
  t.is(err(['--netns-type=path', '/nonexistent']), 'existing path expected when --netns-type=path: No such file or directory');
  t.regex(err(['--macaddress=02:00:00:00:00:01', '1']), /only valid with -c/);
  t.regex(err(['--macaddress=01:00:00:00:00:01', '-c', '1']), /valid unicast MAC/);
  t.regex(err(['--target-type=bess', '1']), /not supported/);
});

test('slirp4netns setup: the guest at cidr+100, host loopback at the gateway unless disabled, the slirp4netns API', (t) => {
  const s = slirpSetup(run(['--cidr=10.7.0.0/24', '-6', '--api-socket=/tmp/a', '1']));
  t.like(s.plan, { guest4: '10.7.0.100', gateway4: '10.7.0.2', dns4: '10.7.0.3', mtu: 1500, guest6: 'fd00::100' });
  t.is(s.mapHostLoopback, '10.7.0.2');
  t.is(s.apiProtocol, 'slirp4netns');
  t.is(slirpSetup(run(['--disable-host-loopback', '1'])).mapHostLoopback, undefined);
});

test('slirp4netns sandbox: what the root holds, how it is mounted, the one capability kept; podman finds the flags in --help', (t) => {
  t.like(run(['--enable-sandbox', '--enable-seccomp', '1']), { sandbox: true, seccomp: true });
  t.true(slirpSetup(run(['--enable-seccomp', '1'])).noSplice, 'no splice helper once exec is blocked');
  t.falsy(slirpSetup(run(['1'])).noSplice);
  const a = sandboxArgs({ installRoot: '/opt/burrow', node: '/usr/bin/node', apiDir: { src: '/run/user/1000/libpod/tmp', dst: '/run/user/1000/libpod/tmp' } });
  t.deepEqual(a, [
    '-Z',
    '-B', '/etc:/etc', '-E', 'nosuid,nodev,noexec',
    '-B', '/run:/run', '-E', 'nosuid,nodev,noexec',
    '-B', '/usr:/usr', '-E', 'nosuid,nodev',
    '-B', '/opt/burrow/dist:/opt/burrow/dist', '-E', 'nosuid,nodev',
    '-B', '/opt/burrow/build:/opt/burrow/build', '-E', 'nosuid,nodev',
    '-V', '/run/user/1000/libpod/tmp:/run/user/1000/libpod/tmp', '-E', 'nosuid,nodev,noexec',
    '-c', '400',
  ]);
  const b = sandboxArgs({ installRoot: '/srv/b', node: '/opt/node-20/bin/node' });
  t.true(b.join(' ').includes('-B /opt/node-20:/opt/node-20 -E nosuid,nodev'), 'a Node runtime outside /usr is bound whole');
  t.false(b.includes('-V'), 'no API socket: nothing writable');
  for (const flag of ['--enable-sandbox', '--enable-seccomp']) t.true(USAGE.includes(flag));
});
