/** run's podman options: users, env files, entrypoints, labels, hosts, security options, mounts. */
import test from 'ava';
import { ContainerError } from './containers.js';
import { helperUserArg, resolveUser } from './passwd.js';
import { containerCommand, containerEnv, parseAddHosts, parseEntrypoint, parseEnvFile, parseLabels, parseSecurityOpts } from './run_spec.js';
import { checkDestinations, parseMountFlag, parseTmpfsFlag, parseVolumeFlag } from './volumes.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n';
const GROUP = 'root:x:0:\nwww-data:x:33:\nstaff:x:50:app,www-data\nvideo:x:44:app\napp:x:1000:\n';

test('--user: names and ids from the container\'s own files, with supplementary groups and HOME', (t) => {
  t.deepEqual(resolveUser('app', PASSWD, GROUP), { uid: 1000, gid: 1000, groups: [50, 44], home: '/home/app', name: 'app' });
  t.deepEqual(resolveUser('33', PASSWD, GROUP), { uid: 33, gid: 33, groups: [50], home: '/var/www', name: 'www-data' });
  t.deepEqual(resolveUser('4242', PASSWD, GROUP), { uid: 4242, gid: 0, groups: [], home: '/' }, 'an id without an entry: gid 0, as runc');
  t.deepEqual(resolveUser('app:staff', PASSWD, GROUP), { uid: 1000, gid: 50, groups: [], home: '/home/app', name: 'app' }, 'a group given: no supplementary ones');
  t.deepEqual(resolveUser('1:2', '', ''), { uid: 1, gid: 2, groups: [], home: '/' });
  t.is(helperUserArg(resolveUser('app', PASSWD, GROUP)), '1000:1000:50,44');
  t.throws(() => resolveUser('nosuch', PASSWD, GROUP), { instanceOf: ContainerError, message: 'unable to find user nosuch: no matching entries in the container\'s /etc/passwd' });
  t.throws(() => resolveUser('app:nogroup', PASSWD, GROUP), { message: /unable to find group nogroup/ });
  t.throws(() => resolveUser('a:b:c', PASSWD, GROUP), { message: /expected USER\[:GROUP\]/ });
  t.throws(() => resolveUser('99999999999', PASSWD, GROUP), { message: /invalid uid/ });
});

test('--env-file and -e as podman reads them; the image\'s Env below, -e on top', (t) => {
  const caller = { FROM_CALLER: 'yes', PREFIX_A: '1', PREFIX_B: '2' };
  t.deepEqual(parseEnvFile('# comment\n\nA=1\nB="quoted stays"\n  C=with = sign\nFROM_CALLER\nUNSET\n', 'f.env', caller), ['A=1', 'B="quoted stays"', 'C=with = sign', 'FROM_CALLER=yes']);
  t.throws(() => parseEnvFile('BAD KEY=1\n', 'f.env', {}), { message: 'parsing env file "f.env": line 1: variable "BAD KEY" contains whitespaces' });
  const env = containerEnv({ image: ['PATH=/image/bin', 'X=image'], files: ['X=file'], flags: ['X=flag', 'FROM_CALLER', 'PREFIX_*'] }, 'h1', '/root', caller);
  t.true(env.includes('PATH=/image/bin'));
  t.true(env.includes('X=flag'));
  t.true(env.includes('FROM_CALLER=yes') && env.includes('PREFIX_A=1') && env.includes('PREFIX_B=2'));
  t.true(env.includes('HOSTNAME=h1') && env.includes('TERM=xterm') && env.includes('container=burrow'));
  t.throws(() => containerEnv({ flags: ['=x'] }, 'h', '/', {}), { message: /the name is empty/ });
});

test('--entrypoint replaces the image\'s and drops its Cmd; arguments replace Cmd', (t) => {
  const image = { Entrypoint: ['/docker-entrypoint.sh'], Cmd: ['nginx', '-g', 'daemon off;'] };
  t.deepEqual(containerCommand([], undefined, image), ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;']);
  t.deepEqual(containerCommand(['sh'], undefined, image), ['/docker-entrypoint.sh', 'sh']);
  t.deepEqual(containerCommand([], '/bin/sh', image), ['/bin/sh']);
  t.deepEqual(containerCommand(['-c', 'id'], '["/bin/sh"]', image), ['/bin/sh', '-c', 'id']);
  t.deepEqual(parseEntrypoint('["a", "b c"]'), ['a', 'b c']);
  t.throws(() => parseEntrypoint('[1]'), { message: /JSON array of strings/ });
});

test('labels, --add-host and --security-opt', (t) => {
  t.deepEqual(parseLabels(['app=web', 'tier', 'x=a=b']), { app: 'web', tier: '', x: 'a=b' });
  t.deepEqual(parseAddHosts(['db:10.0.0.5', 'v6:fd00::5', 'b:[::1]']), ['10.0.0.5\tdb', 'fd00::5\tv6', '::1\tb']);
  t.throws(() => parseAddHosts(['foo']), { message: 'bad format for add-host: "foo"' }, 'podman\'s message');
  t.throws(() => parseAddHosts(['foo:300.1.1.1']), { message: /invalid IP address/ });
  t.deepEqual(parseSecurityOpts(['no-new-privileges', 'label=disable', 'seccomp=unconfined', 'apparmor=unconfined']), { noNewPrivs: true, unmasked: false });
  t.deepEqual(parseSecurityOpts(['no-new-privileges=false', 'unmask=ALL']), { noNewPrivs: false, unmasked: true });
  t.throws(() => parseSecurityOpts(['seccomp=/x.json']), { message: /applies no seccomp filter/ });
  t.throws(() => parseSecurityOpts(['apparmor=my-profile']), { message: /no AppArmor/ });
  t.throws(() => parseSecurityOpts(['foo=bar']), { message: /invalid --security-opt "foo=bar"/ });
  t.throws(() => parseSecurityOpts(['unmask=/proc/kcore']), { message: /all paths or none/ });
});

test('-v, --mount and --tmpfs: binds (relative ones too), named and anonymous volumes, options', (t) => {
  const cwd = process.cwd();
  t.like(parseVolumeFlag('./runtime:/srv:ro,Z', cwd), { type: 'bind', source: `${cwd}/runtime`, destination: '/srv', ro: true, flags: [], options: ['ro', 'Z'] });
  t.like(parseVolumeFlag('/tmp:/t:noexec,bind', cwd), { type: 'bind', ro: false, flags: ['noexec', 'norec'] });
  t.like(parseVolumeFlag('data:/var/lib/data', cwd), { type: 'volume', source: 'data', flags: ['nosuid', 'nodev'] });
  t.like(parseVolumeFlag('/cache', cwd), { type: 'volume', source: '', anonymous: true, destination: '/cache' });
  t.like(parseVolumeFlag('/cache:ro', cwd), { type: 'volume', anonymous: true, ro: true });
  t.throws(() => parseVolumeFlag('./nonexistent-dir:/x', cwd), { message: /does not exist/ });
  t.throws(() => parseVolumeFlag('/tmp:/x:badopt', cwd), { message: /unknown option "badopt"/ });
  t.throws(() => parseVolumeFlag('/tmp:/x:shared', cwd), { message: /propagation is not supported/ });
  t.throws(() => parseVolumeFlag('/tmp:rel:ro', cwd), { message: /must be absolute/ });
  t.throws(() => parseVolumeFlag('bad name:/x', cwd), { message: /neither a path/ });
  t.like(parseMountFlag('type=bind,source=/tmp,target=/t,readonly', cwd), { type: 'bind', source: '/tmp', destination: '/t', ro: true });
  t.like(parseMountFlag('type=volume,src=v1,dst=/v', cwd), { type: 'volume', source: 'v1', destination: '/v' });
  t.like(parseMountFlag('type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=0700', cwd), { type: 'tmpfs', tmpfsOptions: 'size=64m,mode=0700', flags: ['nosuid', 'nodev', 'noexec'] });
  t.throws(() => parseMountFlag('type=bind,target=/t', cwd), { message: /needs source=/ });
  t.throws(() => parseMountFlag('type=bind,source=/tmp,target=/t,weird=1', cwd), { message: /unknown option weird/ });
  t.throws(() => parseMountFlag('type=nfs,target=/t', cwd), { message: /type must be bind, volume or tmpfs/ });
  t.like(parseTmpfsFlag('/run/app:size=1m,mode=700'), { type: 'tmpfs', destination: '/run/app', tmpfsOptions: 'size=1m,mode=700', flags: ['noexec', 'nosuid', 'nodev'] });
  t.like(parseTmpfsFlag('/t:exec'), { flags: ['nosuid', 'nodev'], tmpfsOptions: 'mode=1777' });
  t.throws(() => parseTmpfsFlag('rel'), { message: /must be absolute/ });
  t.throws(() => checkDestinations([parseTmpfsFlag('/a'), parseVolumeFlag('/tmp:/a', cwd)]), { message: '/a: duplicate mount destination' });
});
