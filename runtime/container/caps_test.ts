import test from 'ava';
import { capabilityMask, capabilityNames, capNumber, CapabilityError, DEFAULT_CAPABILITIES } from './caps.js';

test('default set is podman\'s eleven', (t) => {
  const names = capabilityNames(capabilityMask());
  t.deepEqual(names, DEFAULT_CAPABILITIES.map((n) => `CAP_${n}`).sort((a, b) => capNumber(a, '') - capNumber(b, '')));
  t.is(capabilityMask(), 0x800405fbn); // CapBnd of a podman 4 container in /proc/PID/status (docker adds NET_RAW, MKNOD, AUDIT_WRITE: 0xa80425fb)
});

test('add and drop by name, with or without CAP_, any case, comma lists', (t) => {
  const m = capabilityMask(['net_admin,CAP_NET_RAW'], ['cap_chown']);
  t.true(capabilityNames(m).includes('CAP_NET_ADMIN'));
  t.true(capabilityNames(m).includes('CAP_NET_RAW'));
  t.false(capabilityNames(m).includes('CAP_CHOWN'));
});

test('ALL: drop ALL then add one; add ALL then drop one', (t) => {
  t.deepEqual(capabilityNames(capabilityMask(['NET_BIND_SERVICE'], ['ALL'])), ['CAP_NET_BIND_SERVICE']);
  const all = capabilityMask(['ALL'], ['SYS_ADMIN']);
  t.is(capabilityNames(all).length, 40);
  t.false(capabilityNames(all).includes('CAP_SYS_ADMIN'));
  t.is(capabilityMask([], ['ALL']), 0n);
});

test('unknown names and contradictions are clear errors', (t) => {
  t.throws(() => capabilityMask(['NET_ADMN']), { instanceOf: CapabilityError, message: /--cap-add: unknown capability "NET_ADMN"/ });
  t.throws(() => capabilityMask(['NET_RAW'], ['net_raw']), { message: /NET_RAW is both added and dropped/ });
});
