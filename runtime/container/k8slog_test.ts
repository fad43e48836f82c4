/** The k8s-file log format, against what conmon wrote for podman 4.3.1 on this machine. */
import test from 'ava';
import { displayTimestamp, formatChunk, joinLines, LogTail, logTimestamp, parseLog } from './k8slog.js';

// conmon's file for: sh -c 'echo one; echo two >&2; printf partial; sleep 1; echo " end"'
const CONMON = [
  '2026-12-02T02:41:28.274119951+00:00 stdout F one',
  '2026-12-02T02:41:28.274119951+00:00 stdout P partial',
  '2026-12-02T02:41:28.274319686+00:00 stderr F two',
  '2026-12-02T02:41:29.275498066+00:00 stdout F  end',
  '',
].join('\n');

test('timestamps: conmon\'s in the file, Go\'s RFC3339Nano for logs -t', (t) => {
  t.is(logTimestamp(1796179288274119951n, 0), '2026-12-02T02:41:28.274119951+00:00');
  t.is(logTimestamp(1796179288274119951n, 90), '2026-12-02T04:11:28.274119951+01:30');
  t.is(logTimestamp(1796179288000000000n, -300), '2026-12-01T21:41:28.000000000-05:00');
  t.is(displayTimestamp('2026-12-02T02:41:28.274119951+00:00'), '2026-12-02T02:41:28.274119951Z', 'as podman logs -t printed it');
  t.is(displayTimestamp('2026-12-02T02:41:28.274119950+00:00'), '2026-12-02T02:41:28.27411995Z');
  t.is(displayTimestamp('2026-12-02T02:41:28.000000000+01:00'), '2026-12-02T02:41:28+01:00');
});

test('chunks become F lines and a P part; a file conmon wrote reads back as podman logs printed it', (t) => {
  const time = '2026-12-02T02:41:28.274119951+00:00';
  t.is(formatChunk('stdout', Buffer.from('one\npartial'), time).toString(), `${time} stdout F one\n${time} stdout P partial\n`);
  t.is(formatChunk('stderr', Buffer.from('\n'), time).toString(), `${time} stderr F \n`, 'an empty line');
  const lines = joinLines(parseLog(Buffer.from(CONMON)));
  t.deepEqual(lines.map((l) => [l.stream, l.text.toString()]), [['stdout', 'one\n'], ['stderr', 'two\n'], ['stdout', 'partial end\n']]);
  t.is(lines[2].time, '2026-12-02T02:41:28.274119951+00:00', 'a joined line has its first part\'s time');
  t.deepEqual(parseLog(Buffer.from('garbage\nx y z\n2026 stdout Q x\n')), [], 'lines that are not records are skipped');
});

test('following a growing file: only complete records come out, in order', (t) => {
  const tail = new LogTail();
  const whole = Buffer.from(CONMON);
  const got = [];
  for (let i = 0; i < whole.length; i += 7) got.push(...tail.push(whole.subarray(i, i + 7)));
  t.deepEqual(got.map((r) => r.text.toString()), ['one', 'partial', 'two', ' end']);
  t.deepEqual(tail.push(Buffer.from('2026-12-02T02:41:28.274119951+00:00 stdout F no newline yet')), []);
});
