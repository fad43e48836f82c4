/** The drop log: the first of each reason at once, then a sum per interval, quiet reasons never. */
import test from 'ava';
import { DropLog, dropLogWanted } from './drop_log.js';

test('drops are logged by reason with a rate limit; lifecycle events are not', (t) => {
  const lines: string[] = [];
  let now = 0;
  const log = new DropLog((l) => lines.push(l), () => now, 1000, 'x');
  log.note('udp-refused-destination', 'loopback');
  for (let i = 0; i < 500; i++) log.note('udp-refused-destination', 'loopback');
  log.note('tcp-close-done');
  t.deepEqual(lines, ['x: udp-refused-destination (loopback)\n'], 'one line at once, the flood is summed');
  now = 1500;
  log.note('udp-refused-destination', 'multicast');
  t.deepEqual(lines.slice(1), ['x: udp-refused-destination (multicast) x501 in 1.5 s\n']);
  now = 1600;
  log.note('udp-refused-destination');
  log.close();
  t.is(lines.length, 3, 'close logs what is pending');
  t.true(dropLogWanted({ BURROW_DEBUG: 'net,drops' }));
  t.true(dropLogWanted({ BURROW_DEBUG: 'all' }));
  t.false(dropLogWanted({}));
});
