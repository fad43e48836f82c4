import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NetworkRecords } from '../../net/dns/records.js';
import { parseArgs, readConfigDir, UsageError } from './aardvark_dns.js';

test('aardvark-dns args: clap\'s forms, the default port and domain, and clap\'s errors', (t) => {
  t.like(parseArgs(['--config', '/run/x/aardvark-dns', '-p', '53', 'run']), { command: 'run', config: '/run/x/aardvark-dns', port: 53, domain: 'dns.podman' });
  t.like(parseArgs(['-c/d', '-p5300', '-f', '.corp.example', 'run']), { command: 'run', config: '/d', port: 5300, domain: 'corp.example' });
  t.like(parseArgs(['--config=/d', '--port=1', 'run']), { config: '/d', port: 1 });
  t.like(parseArgs(['run']), { port: 5533, config: '/dev/stdin' });
  t.like(parseArgs(['version']), { command: 'version' });
  t.like(parseArgs(['-V']), { command: 'version-flag' });
  t.like(parseArgs(['help', 'run']), { command: 'help', helpOf: 'run' });
  t.like(parseArgs(['run', '--help']), { command: 'help', helpOf: 'run' });
  t.throws(() => parseArgs(['bogus']), { instanceOf: UsageError, message: /^error: Found argument 'bogus' which wasn't expected/ });
  t.throws(() => parseArgs(['-p', 'x', 'run']), { message: /Invalid value "x" for '--port <PORT>': invalid digit found in string/ });
  t.throws(() => parseArgs(['-p', '70000', 'run']), { message: /number too large to fit in target type/ });
  t.throws(() => parseArgs(['--config']), { message: /'--config <CONFIG>' requires a value/ });
  t.throws(() => parseArgs([]), { message: /requires a subcommand/ });
});

test('aardvark-dns config dir: one network per file, %int is internal, the pid file is not a network, a bad file keeps its records', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aardvark-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'aardvark.pid'), '123');
  fs.writeFileSync(path.join(dir, 'pub'), '10.89.7.1,fd9c::1 192.0.2.53\n9d76abda8ca8c530 10.89.7.50 fd9c::2 c1,web,9d76abda8ca8\n');
  fs.writeFileSync(path.join(dir, 'back%int'), '10.89.8.1\naa 10.89.8.2  db,aa\n');
  const first = readConfigDir(dir, new Map(), { domain: 'dns.podman', noProxy: false });
  t.is(first.files, 2);
  t.deepEqual(first.errors, []);
  const pub = first.networks.get('pub')!;
  t.deepEqual(pub.servers, ['192.0.2.53']);
  t.deepEqual(pub.entries[0].names, ['c1', 'web', '9d76abda8ca8']);
  t.false(pub.noForward);
  t.like(first.networks.get('back%int'), { network: 'back', noForward: true });
  fs.writeFileSync(path.join(dir, 'pub'), 'garbage\n');
  const second = readConfigDir(dir, first.networks, { domain: 'dns.podman', noProxy: true });
  t.regex(second.errors.join('\n'), /bad gateway "garbage".*keeping its previous records/);
  t.is(second.networks.get('pub'), pub as NetworkRecords, 'the half-written file keeps what it had');
  t.true(second.networks.get('back%int')!.noForward);
  fs.rmSync(path.join(dir, 'pub'));
  fs.rmSync(path.join(dir, 'back%int'));
  t.is(readConfigDir(dir, second.networks, { domain: 'dns.podman', noProxy: false }).files, 0);
});
