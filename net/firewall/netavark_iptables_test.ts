import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addLines, deleteLines, networkHash, networkRules, portRules, sharedRules, type Family, type Rule } from './netavark_iptables.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'netavark');
const BUILTIN: Record<string, string[]> = { filter: ['INPUT', 'FORWARD', 'OUTPUT'], nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'] };

/** iptables-restore --noflush over a table held in memory, printed in iptables-save's order. */
class Table {
  chains = new Map<string, string[]>();
  constructor(readonly name: string) {
    for (const c of BUILTIN[name]) this.chains.set(c, []);
  }
  state() {
    return { chains: new Set(this.chains.keys()), rules: this.save() };
  }
  apply(lines: string[]) {
    for (const l of lines) {
      let m;
      if ((m = /^:(\S+) - \[0:0\]$/.exec(l))) this.chains.set(m[1], []);
      else if ((m = /^-A (\S+) (.*)$/.exec(l))) this.chains.get(m[1])!.push(m[2]);
      else if ((m = /^-I (\S+) 1 (.*)$/.exec(l))) this.chains.get(m[1])!.unshift(m[2]);
      else if ((m = /^-D (\S+) (.*)$/.exec(l))) this.chains.set(m[1], this.chains.get(m[1])!.filter((r) => r !== m![2]));
      else if ((m = /^-X (\S+)$/.exec(l))) this.chains.delete(m[1]);
      else throw new Error(`unknown line ${l}`);
    }
  }
  save(): string[] {
    const user = [...this.chains.keys()].filter((c) => !BUILTIN[this.name].includes(c)).sort();
    return [...BUILTIN[this.name], ...user].flatMap((c) => this.chains.get(c)!.map((r) => `-A ${c} ${r}`));
  }
}

const capnet = (f: Family) => ({ name: 'capnet', bridge: 'podman9', subnets: [f === 4 ? '10.89.9.0/24' : 'fd10:1:2:3::/64'], gateways: [f === 4 ? '10.89.9.1' : 'fd10:1:2:3::1'], isolate: true });
const PORTS = [{ host_ip: '', container_port: 80, host_port: 8080, range: 1, protocol: 'tcp' }, { host_ip: '127.0.0.1', container_port: 53, host_port: 5353, range: 3, protocol: 'udp' }];
const ID = 'ab'.repeat(32);

function rulesFor(f: Family): Rule[] {
  const n = capnet(f);
  return [...sharedRules(true), ...networkRules(n, f, 53), ...portRules(n, f, ID, f === 4 ? '10.89.9.5' : 'fd10:1:2:3::5', PORTS)];
}

test('netavark chain hashes: the first 13 hex digits of SHA-512, as netavark names its chains', (t) => {
  t.is(networkHash('capnet'), 'A7F9E1D4C3ABF');
  t.is(networkHash('podman'), '1D8721804F16F');
  t.is(networkHash('stubnet'), '99CDCB3AA2B63');
});

for (const f of [4, 6] as Family[]) {
  test(`netavark rules (IPv${f}): exactly what netavark 1.4 wrote for the same container (iptables-save captured on Debian 12), and torn down to the shared chains`, (t) => {
    const tables = { filter: new Table('filter'), nat: new Table('nat') };
    for (const tb of Object.values(tables)) tb.apply(addLines(rulesFor(f), tb.name as 'filter' | 'nat', tb.state()));
    const golden = fs.readFileSync(path.join(FIXTURES, `capnet.iptables${f}`), 'utf8').trim().split('\n');
    t.deepEqual([...tables.filter.save(), ...tables.nat.save()], golden);
    // a second setup adds nothing
    for (const tb of Object.values(tables)) t.deepEqual(addLines(rulesFor(f), tb.name as 'filter' | 'nat', tb.state()), []);
    // teardown of everything but the shared rules leaves what netavark 1.4 leaves
    const mine = rulesFor(f).filter((r) => !sharedRules(true).some((s) => s.chain === r.chain && s.spec === r.spec));
    for (const tb of Object.values(tables)) tb.apply(deleteLines(mine, tb.name as 'filter' | 'nat', tb.state()));
    t.deepEqual(tables.filter.save(), ['-A FORWARD -j NETAVARK_ISOLATION_1', '-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD']);
    t.is(tables.nat.save().length, 5, 'the HOSTPORT chains and their jumps stay');
  });
}

test('netavark rules: a DNS port other than 53 DNATs udp/53 on each gateway, as netavark with NETAVARK_DNS_PORT', (t) => {
  const rules = networkRules(capnet(4), 4, 5354);
  t.true(rules.some((r) => r.chain === 'NETAVARK-HOSTPORT-DNAT' && r.spec === '-d 10.89.9.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.89.9.1:5354'));
  t.true(networkRules(capnet(6), 6, 5354).some((r) => r.spec.endsWith('--to-destination [fd10:1:2:3::1]:5354')));
});
