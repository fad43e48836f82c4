/** The attach protocol's framing and podman's detach keys. */
import test from 'ava';
import { AttachProtocolError, DetachMatcher, encodeFrame, exitFrame, Frame, FrameDecoder, MAX_FRAME, parseDetachKeys, parseExit, parseResize, resizeFrame } from './attach_proto.js';

test('frames survive any split of the stream, and bad ones are refused', (t) => {
  const stream = Buffer.concat([encodeFrame(Frame.HELLO, '{"rows":24,"cols":80}'), encodeFrame(Frame.STDIN, 'ls\r'), resizeFrame(50, 132), exitFrame(-1), encodeFrame(Frame.STDIN_EOF)]);
  for (const step of [1, 3, 5, stream.length]) {
    const d = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < stream.length; i += step) frames.push(...d.push(stream.subarray(i, i + step)));
    t.deepEqual(frames.map((f) => f.type), [Frame.HELLO, Frame.STDIN, Frame.RESIZE, Frame.EXIT, Frame.STDIN_EOF], `split every ${step} bytes`);
    t.deepEqual(parseResize(frames[2].payload), { rows: 50, cols: 132 });
    t.is(parseExit(frames[3].payload), -1);
  }
  const big = Buffer.alloc(5);
  big[0] = Frame.STDIN;
  big.writeUInt32BE(MAX_FRAME + 1, 1);
  t.throws(() => new FrameDecoder().push(big), { instanceOf: AttachProtocolError, message: /at most/ });
  t.throws(() => new FrameDecoder().push(Buffer.from([0x7f, 0, 0, 0, 0])), { instanceOf: AttachProtocolError, message: /unknown frame type 0x7f/ });
  t.throws(() => parseResize(Buffer.alloc(3)), { instanceOf: AttachProtocolError });
});

test('detach keys: podman\'s syntax, ctrl-p,ctrl-q by default, "" disables', (t) => {
  t.deepEqual([...parseDetachKeys('ctrl-p,ctrl-q')], [0x10, 0x11]);
  t.deepEqual([...parseDetachKeys('ctrl-a,x,ctrl-@,ctrl-[,ctrl-_')], [0x01, 0x78, 0x00, 0x1b, 0x1f]);
  t.is(parseDetachKeys('').length, 0);
  t.throws(() => parseDetachKeys('ctrl-pq'), { instanceOf: AttachProtocolError, message: /invalid detach key "ctrl-pq"/ });
  t.throws(() => parseDetachKeys('ctrl-1'), { instanceOf: AttachProtocolError });
});

test('the matcher holds back a started sequence, lets a broken one through in order, and detaches on the whole', (t) => {
  const m = new DetachMatcher(parseDetachKeys('ctrl-p,ctrl-q'));
  t.deepEqual(m.push(Buffer.from('ab\x10')), { forward: Buffer.from('ab'), detach: false }, 'ctrl-p is held');
  t.deepEqual(m.push(Buffer.from('c')), { forward: Buffer.from('\x10c'), detach: false }, 'not followed by ctrl-q: both go out');
  t.deepEqual(m.push(Buffer.from('\x10\x10')), { forward: Buffer.from('\x10'), detach: false }, 'a second ctrl-p restarts the sequence');
  t.deepEqual(m.push(Buffer.from('\x11rest')), { forward: Buffer.alloc(0), detach: true }, 'detached: nothing of the sequence is sent');
  const split = new DetachMatcher(parseDetachKeys('ctrl-p,ctrl-q'));
  t.is(split.push(Buffer.from('x\x10')).detach, false);
  t.is(split.push(Buffer.from('\x11')).detach, true, 'the sequence may span reads');
  t.deepEqual(new DetachMatcher(Buffer.alloc(0)).push(Buffer.from('\x10\x11')), { forward: Buffer.from('\x10\x11'), detach: false }, 'disabled');
});
