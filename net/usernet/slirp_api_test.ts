import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { PortSpec } from '../ports/portspec.js';
import { answerRequest, serveSlirpApi, type SlirpForwards } from './slirp_api.js';

/** Forwards in memory; a port taken by "another program" fails as a bind would. */
function forwards(taken = new Set<number>()): SlirpForwards & { specs: Map<number, PortSpec> } {
  const specs = new Map<number, PortSpec>();
  let next = 1;
  return {
    specs,
    add: async (spec) => {
      if (taken.has(spec.hostPort) || [...specs.values()].some((s) => s.hostPort === spec.hostPort && s.proto === spec.proto)) throw new Error('EADDRINUSE');
      specs.set(next, spec);
      return { id: next++ };
    },
    remove: (id) => specs.delete(id),
    list: () => [...specs].map(([id, spec]) => ({ id, spec })),
  };
}

const G = '10.0.2.100';
const ask = (text: string, f: SlirpForwards) => answerRequest(text, f, G);
const err = (desc: string) => ({ error: { desc: `bad request: ${desc}` } });

test('slirp4netns API: add, list (slirp4netns\'s shape, no "return"), remove; podman\'s request as it sends it', async (t) => {
  const f = forwards();
  t.deepEqual(await ask('{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"0.0.0.0","host_port":8081,"guest_addr":"","guest_port":81}}', f), { return: { id: 1 } });
  t.deepEqual(f.specs.get(1), { proto: 'udp', hostAddr: '', hostPort: 8081, guestPort: 81, count: 1 });
  t.deepEqual(await ask('{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}', f), { return: { id: 2 } });
  t.deepEqual(await ask('{"execute":"list_hostfwd"}', f), { entries: [
    { id: 1, proto: 'udp', host_addr: '0.0.0.0', host_port: 8081, guest_addr: G, guest_port: 81 },
    { id: 2, proto: 'tcp', host_addr: '127.0.0.1', host_port: 8080, guest_addr: G, guest_port: 80 },
  ] });
  t.deepEqual(await ask('{"execute":"remove_hostfwd","arguments":{"id":1}}', f), { return: {} });
  t.deepEqual(await ask('{"execute":"remove_hostfwd","arguments":{"id":1}}', f), err('remove_hostfwd: bad arguments.id'));
  t.deepEqual(await ask('{"execute":"list_hostfwd","arguments":{}}', f), { entries: [{ id: 2, proto: 'tcp', host_addr: '127.0.0.1', host_port: 8080, guest_addr: G, guest_port: 80 }] });
});

test('slirp4netns API: every error reply in slirp4netns\'s words, including where slirp4netns itself crashes or accepts nonsense', async (t) => {
  const f = forwards(new Set([9999]));
  const add = (args: object) => ask(JSON.stringify({ execute: 'add_hostfwd', arguments: args }), f);
  t.deepEqual(await ask('notjson', f), err('cannot parse JSON'));
  t.deepEqual(await ask('{"execute":"list_hostfwd"} trailing', f), err('cannot parse JSON'));
  t.deepEqual(await ask('[1]', f), err('json_object() failed'));
  t.deepEqual(await ask('{"foo":1}', f), err('no execute found'));
  t.deepEqual(await ask('{"execute":1}', f), err('no execute found'));
  t.deepEqual(await ask('{"execute":"bogus"}', f), err('unknown execute'));
  t.deepEqual(await ask(JSON.stringify({ execute: 'list_hostfwd', x: 'a'.repeat(5000) }), f), err('too large message'));
  t.deepEqual(await ask('{"execute":"add_hostfwd"}', f), err('add_hostfwd: bad arguments'));
  t.deepEqual(await add({ host_port: 1, guest_port: 2 }), err('add_hostfwd: bad arguments.proto'));
  t.deepEqual(await add({ proto: 'sctp', host_port: 1, guest_port: 2 }), err('add_hostfwd: bad arguments.proto'));
  t.deepEqual(await add({ proto: 'tcp', guest_port: 2 }), err('add_hostfwd: bad arguments.host_port'));
  t.deepEqual(await add({ proto: 'tcp', host_port: '8080', guest_port: 2 }), err('add_hostfwd: bad arguments.host_port'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 70000, guest_port: 2 }), err('add_hostfwd: bad arguments.host_port'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 8080.5, guest_port: 2 }), err('add_hostfwd: bad arguments.host_port'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 8080 }), err('add_hostfwd: bad arguments.guest_port'));
  t.deepEqual(await add({ proto: 'tcp', host_addr: 'bad', host_port: 8080, guest_port: 2 }), err('add_hostfwd: bad arguments.host_addr'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 8080, guest_addr: 'bad', guest_port: 2 }), err('add_hostfwd: bad arguments.guest_addr'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 8080, guest_addr: '10.0.3.5', guest_port: 2 }), err('add_hostfwd: bad arguments.guest_addr'));
  t.deepEqual(await add({ proto: 'tcp', host_port: 9999, guest_port: 2 }), err('add_hostfwd: slirp_add_hostfwd failed'));
  t.deepEqual(await ask('{"execute":"remove_hostfwd"}', f), err('remove_hostfwd: bad arguments.id'));
  t.deepEqual(await ask('{"execute":"remove_hostfwd","arguments":{"id":"x"}}', f), err('remove_hostfwd: bad arguments.id'));
  t.is(f.specs.size, 0, 'no failed request added anything');
});

/** One connection: writes `text`, maybe shuts down writing, and returns everything read until the server closes. */
function exchange(sock: string, text: string, shutdown: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let out = '';
    c.on('connect', () => (shutdown ? c.end(text) : c.write(text)));
    c.on('data', (d) => (out += d.toString()));
    c.on('close', () => resolve(out));
    c.on('error', reject);
  });
}

test('slirp4netns API socket: one request per connection, answered without a newline at EOF or once the JSON is whole, then closed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slirpapi-'));
  const sock = path.join(dir, 'api.sock');
  const close = await serveSlirpApi(sock, forwards(), G);
  t.teardown(() => {
    close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.is((fs.statSync(sock).mode & 0o777), 0o600);
  t.is(await exchange(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}', true), '{"return":{"id":1}}');
  t.is(await exchange(sock, '{"execute":"list_hostfwd"}', false), '{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}', 'answered once the object is whole, without EOF');
  t.is(await exchange(sock, '{"exec', true), '{"error":{"desc":"bad request: cannot parse JSON"}}');
  t.is(await exchange(sock, '', true), '', 'nothing asked, nothing answered');
  close();
  t.false(fs.existsSync(sock), 'the closer removes the socket file');
});
