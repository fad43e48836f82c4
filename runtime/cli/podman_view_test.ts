/** ps, port, inspect and top output against what podman 4.3.1 printed for the same containers. */
import test from 'ava';
import type { ContainerRecord } from '../container/containers.js';
import { humanDuration } from './human.js';
import { render, renderRows } from './gotemplate.js';
import { inspectView, portLines, portsText, psFilter, psRow, PS_HEADERS, PS_TABLE } from './podman_view.js';
import { checkDescriptors, formatTop, goDuration, mapBack, parseStat, parseStatus, ttyName } from '../container/top.js';

const NOW = Date.parse('2026-12-02T03:00:07Z');
const rec = (over: Partial<ContainerRecord> = {}): ContainerRecord => ({
  id: '4aad2fbe3b8b4f29af604ad388aa47eaf498fb9a386a1745a2c8492acb4ef098', name: 'pt1', pid: 10, startTime: '1', command: ['sleep', '300'],
  created: '2026-12-02T03:00:00Z', startedAt: '2026-12-02T03:00:00Z', state: 'running', initPid: 21719,
  network: { mode: 'cni', attachments: [{ network: 'podman', netns: '', ifname: 'eth0', result: { ips: [{ address: '10.88.0.4/16', gateway: '10.88.0.1' }], mac: 'fa:21:1c:d2:8e:df' } }] },
  // as the run recorded them for -p 80 -p 127.0.0.1::81 -p 9000-9002 -p 53/udp, host ports chosen
  ports: ['39905:80/tcp', '127.0.0.1:44827:81/tcp', '41489-41491:9000-9002/tcp', '44781:53/udp'],
  ...over,
});
const ctx = { now: NOW, alive: () => true, pods: [] };

test('go-units\' human durations, as podman prints CREATED and STATUS', (t) => {
  t.is(humanDuration(400), 'Less than a second');
  t.is(humanDuration(1500), '1 second');
  t.is(humanDuration(7000), '7 seconds');
  t.is(humanDuration(90_000), 'About a minute');
  t.is(humanDuration(20 * 60_000), '20 minutes');
  t.is(humanDuration(3_600_000), 'About an hour');
  t.is(humanDuration(5 * 3_600_000), '5 hours');
  t.is(humanDuration(3 * 86_400_000), '3 days');
});

test('PORTS and port: podman\'s order and forms (ranges joined in ps, one line each in port)', (t) => {
  t.is(portsText(rec()), '0.0.0.0:39905->80/tcp, 0.0.0.0:41489-41491->9000-9002/tcp, 0.0.0.0:44781->53/udp, 127.0.0.1:44827->81/tcp', 'podman ps printed exactly this');
  t.deepEqual(portLines(rec()).map((l) => `${l.key} -> ${l.host}`), ['80/tcp -> 0.0.0.0:39905', '9000/tcp -> 0.0.0.0:41489', '9001/tcp -> 0.0.0.0:41490', '9002/tcp -> 0.0.0.0:41491', '53/udp -> 0.0.0.0:44781', '81/tcp -> 127.0.0.1:44827']);
});

test('the ps table and templates', (t) => {
  const web = rec({ id: '456fb3ba9c57ac49847dd182982a86cccef7b394a005f13c1da078747cd24eef', name: 'web1', command: ['httpd', '-f', '-p', '80', '-h', '/www'], ports: ['18500:80/tcp'] });
  const text = renderRows(PS_TABLE, [web, rec()].map((r) => psRow(r, ctx).template), PS_HEADERS);
  t.is(text.split('\n')[0], 'CONTAINER ID  IMAGE       COMMAND               CREATED        STATUS            PORTS                                                                                                      NAMES');
  t.regex(text.split('\n')[1], /^456fb3ba9c57              httpd -f -p 80 -h\.\.\.  7 seconds ago  Up 7 seconds ago  0\.0\.0\.0:18500->80\/tcp {2,}web1$/);
  const row = psRow(rec({ labels: { app: 'web' } }), ctx);
  t.is(row.template.ID, '4aad2fbe3b8b');
  t.is(row.template.Names, 'pt1');
  t.is(row.template.Status, 'Up 7 seconds ago');
  t.deepEqual(row.json.Names, ['pt1']);
  t.is(row.json.State, 'running');
  t.deepEqual((row.json.Ports as unknown[])[1], { host_ip: '', container_port: 9000, host_port: 41489, range: 3, protocol: 'tcp' });
  t.is(psRow(rec({ state: 'exited', exitCode: 137, finished: '2026-12-02T02:40:07Z' }), ctx).template.Status, 'Exited (137) 20 minutes ago');
});

test('ps --filter: keys AND, repeated keys OR', (t) => {
  const a = rec({ name: 'web-1', labels: { app: 'web' } });
  const b = rec({ name: 'db', id: 'ffff', labels: { app: 'db' }, state: 'exited', exitCode: 3 });
  const pick = (f: string[]) => [a, b].filter(psFilter(f, ctx)).map((r) => r.name);
  t.deepEqual(pick(['name=web']), ['web-1']);
  t.deepEqual(pick(['name=^db$', 'name=web']), ['web-1', 'db']);
  t.deepEqual(pick(['label=app=db']), ['db']);
  t.deepEqual(pick(['label=app']), ['web-1', 'db']);
  t.deepEqual(pick(['status=exited']), ['db']);
  t.deepEqual(pick(['exited=3']), ['db']);
  t.deepEqual(pick(['id=ffff', 'status=running']), []);
  t.deepEqual(pick(['network=podman']), ['web-1', 'db']);
  t.throws(() => psFilter(['status=sleepy'], ctx), { message: /status "sleepy"/ });
  t.throws(() => psFilter(['ancestor=x'], ctx), { message: /invalid filter "ancestor"/ });
});

test('inspect: podman\'s fields beside burrow\'s own', (t) => {
  const d = inspectView(rec({ env: ['PATH=/bin'], labels: { a: 'b' }, mounts: [{ type: 'bind', source: '/srv', destination: '/b', ro: true, flags: [], options: ['ro'] }] }), true, NOW, '/run/burrow/containers/x') as Record<string, any>;
  t.like(d.State, { Status: 'running', Running: true, Pid: 21719, ExitCode: 0 });
  t.is(d.Path, 'sleep');
  t.deepEqual(d.Args, ['300']);
  t.like(d.NetworkSettings, { IPAddress: '10.88.0.4', IPPrefixLen: 16, Gateway: '10.88.0.1', MacAddress: 'fa:21:1c:d2:8e:df' });
  t.like(d.NetworkSettings.Networks.podman, { IPAddress: '10.88.0.4', Gateway: '10.88.0.1', IPPrefixLen: 16 });
  t.deepEqual(d.NetworkSettings.Ports['9001/tcp'], [{ HostIp: '', HostPort: '41490' }]);
  t.deepEqual(d.Mounts, [{ Type: 'bind', Source: '/srv', Destination: '/b', Driver: '', Mode: '', Options: ['rbind'], RW: false, Propagation: 'rprivate' }], 'as podman printed a :ro bind');
  t.deepEqual(d.Config.Env, ['PATH=/bin']);
  t.is(d.HostConfig.NetworkMode, 'bridge');
  t.is(d.name, 'pt1', 'burrow\'s record stays at the top level');
  t.is(d.Name, 'pt1');
  t.is(d.State.FinishedAt, '0001-01-01T00:00:00Z');
  // Go prints structs as {values} and maps as map[k:v]: as podman printed -f '{{.HostConfig.PortBindings}}'
  const one = inspectView(rec({ ports: ['18701:8080/tcp'], labels: { app: 'web' } }), true, NOW, '/x');
  t.is(render('{{.HostConfig.PortBindings}} {{.Config.Labels}} {{.State.Status}}', one), 'map[8080/tcp:[{ 18701}]] map[app:web] running');
  const gone = inspectView(rec(), false, NOW, '/x') as Record<string, any>;
  t.is(gone.State.Status, 'exited', 'a record whose supervisor died is not running');
});

test('top: /proc parsing, pids and users of the container, Go durations', (t) => {
  t.deepEqual(parseStat('4242 (my (odd) cmd) S 1 4242 4242 34816 4242 4194560 1 0 0 0 7 3 0 0 20 0 1 0 500 1000000 200'), { comm: 'my (odd) cmd', fields: 'S 1 4242 4242 34816 4242 4194560 1 0 0 0 7 3 0 0 20 0 1 0 500 1000000 200'.split(' ') });
  t.deepEqual(parseStatus('Name:\tsleep\nUid:\t100033\t100033\t100033\t100033\nGid:\t100033\t1\t1\t1\nNSpid:\t4242\t3\n'), { nspid: [4242, 3], uid: 100033, gid: 100033 });
  t.is(mapBack('         0     100000      65536\n', 100033), 33);
  t.is(mapBack('         0       1000          1\n', 5), -1);
  t.is(ttyName(34816), 'pts/0');
  t.is(ttyName(0), '?');
  t.is(goDuration(8.957978159), '8.957978159s');
  t.is(goDuration(90), '1m30s');
  t.is(goDuration(3723.5), '1h2m3.5s');
  t.is(goDuration(0), '0s');
  t.is(goDuration(0.92), '920ms');
  const procs = [{ hostPid: 21719, pid: 1, ppid: 0, uid: 0, gid: 0, state: 'S', tty: '?', elapsed: 8.957978159, cpu: 0, args: 'sleep 300', comm: 'sleep', vszKiB: 1000, pgid: 1, nice: 0, hostUser: 0 }];
  t.is(formatTop(procs, checkDescriptors([]), { passwd: '', group: '' }), 'USER        PID         PPID        %CPU        ELAPSED       TTY         TIME        COMMAND\n0           1           0           0.000       8.957978159s  ?           0s          sleep 300\n', 'podman top printed this for the same process');
  t.is(formatTop(procs, checkDescriptors(['pid,user', 'comm']), { passwd: 'root:x:0:0::/root:/bin/sh\n', group: '' }).split('\n')[1], 'PID         USER        COMMAND'.replace(/.*/, '1           root        sleep'));
  t.throws(() => checkDescriptors(['bogus']), { message: /unknown descriptor: bogus/ });
});
