/**
 * The kernel behaviour the userspace stack relies on, confirmed by experiment on a real TAP with
 * IFF_VNET_HDR: a frame written with VIRTIO_NET_HDR_F_NEEDS_CSUM is taken as CHECKSUM_PARTIAL and
 * delivered locally without its checksum being verified (so the stack never sums payload in JS),
 * a frame without flags is verified (a wrong checksum is dropped), and DATA_VALID is ignored on
 * this path (a wrong checksum is still dropped, so it cannot replace NEEDS_CSUM).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { tapOpen, writeFrame } from '../native/mod.js';
import { a4, udpFrame } from '../net/stack/testing.js';
import * as vnet from '../net/wire/vnet.js';
import { ipJson, nsExec, rootTest, testNetns } from './helpers/netns.js';

rootTest('TAP with a vnet header: NEEDS_CSUM frames skip verification on local delivery; plain and DATA_VALID frames are verified', async (t) => {
  const ns = testNetns(t, 'tc');
  const { fd } = tapOpen(ns, 'tap0', { vnetHdr: true });
  t.teardown(() => fs.closeSync(fd));
  nsExec(ns, ['sh', '-c', 'ip link set lo up && ip link set tap0 up && ip addr add 10.0.5.1/24 dev tap0']);
  const mac = Buffer.from(ipJson<Array<{ address: string }>>(ns, ['link', 'show', 'tap0'])[0].address.replace(/:/g, ''), 'hex');
  const srv = spawn('nsenter', [`--net=${ns}`, '--', process.execPath, '-e', `const s = require('dgram').createSocket('udp4'); s.on('message', (m) => console.log(String(m))); s.bind(9000, '10.0.5.1', () => console.log('ready'));`]);
  t.teardown(() => void srv.kill());
  let out = '';
  srv.stdout.on('data', (d: Buffer) => (out += d.toString()));
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 20));
  const frame = (msg: string, flags: number, field: number | null) => {
    const f = udpFrame(a4('10.0.5.2'), 5000, a4('10.0.5.1'), 9000, Buffer.from(msg));
    mac.copy(f, vnet.VNET_HDR_LEN);
    f[0] = flags;
    if (flags & vnet.F_NEEDS_CSUM) {
      f.writeUInt16LE(14 + 20, 6); // csum_start: the UDP header
      f.writeUInt16LE(6, 8); // csum_offset: its checksum field
    }
    if (field !== null) f.writeUInt16BE(field, vnet.VNET_HDR_LEN + 14 + 20 + 6);
    return f;
  };
  writeFrame(fd, [frame('full-checksum', 0, null)]);
  writeFrame(fd, [frame('wrong-checksum', 0, 0x1234)]);
  writeFrame(fd, [frame('partial-garbage', vnet.F_NEEDS_CSUM, 0x1234)]);
  writeFrame(fd, [frame('data-valid-wrong', vnet.F_DATA_VALID, 0x1234)]);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(out.trim().split('\n').slice(1), ['full-checksum', 'partial-garbage']);
});
