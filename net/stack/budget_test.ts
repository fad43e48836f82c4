/** Each budget at its limit: flows by kind and client, half-open handshakes, host sockets, bytes; tickets give back exactly once. */
import test from 'ava';
import { BufferBudget, Budgets, clientKey } from './budget.js';
import { a4, a6 } from './testing.js';

test('outbound and inbound flows have budgets of their own', (t) => {
  const b = new Budgets({ maxOutboundFlows: 3, maxInboundFlows: 2, maxInboundPerClient: 2 });
  const out = [1, 2, 3].map(() => b.open('outbound', null, {}));
  t.true(out.every((x) => typeof x !== 'string'));
  t.is(b.open('outbound', null, {}), 'outbound-flow-limit');
  t.not(typeof b.open('inbound', 'c1', {}), 'string', 'a full outbound budget leaves inbound alone');
  t.not(typeof b.open('inbound', 'c2', {}), 'string');
  t.is(b.open('inbound', 'c3', {}), 'inbound-flow-limit');
  t.is(b.usage().outbound, 3);
});

test('one client gets at most maxInboundPerClient; a /64 is one IPv6 client', (t) => {
  const b = new Budgets({ maxInboundPerClient: 2 });
  const c = clientKey(a4('192.0.2.9'));
  b.open('inbound', c, {});
  const second = b.open('inbound', c, {});
  t.is(b.open('inbound', c, {}), 'inbound-client-limit');
  t.not(typeof b.open('inbound', clientKey(a4('192.0.2.10')), {}), 'string');
  t.is(clientKey(a6('2001:db8:1:2::1')), clientKey(a6('2001:db8:1:2:ffff::9')));
  t.not(clientKey(a6('2001:db8:1:2::1')), clientKey(a6('2001:db8:1:3::1')));
  if (typeof second !== 'string') b.release(second);
  t.not(typeof b.open('inbound', c, {}), 'string', 'released: room again');
});

test('half-open handshakes and host sockets are counted; a refusal takes nothing', (t) => {
  const b = new Budgets({ maxHalfOpenOutbound: 2, maxHostSockets: 3 });
  const a = b.open('outbound', null, { halfOpen: true, hostSockets: 1 });
  b.open('outbound', null, { halfOpen: true, hostSockets: 1 });
  t.is(b.open('outbound', null, { halfOpen: true, hostSockets: 1 }), 'half-open-limit');
  t.deepEqual([b.usage().outbound, b.usage().hostSockets], [2, 2], 'the refused open took no flow and no socket');
  if (typeof a === 'string') return t.fail();
  b.handshakeDone(a);
  b.handshakeDone(a);
  t.is(b.usage().halfOpenOutbound, 1, 'a completed handshake counts once');
  t.not(typeof b.open('outbound', null, { halfOpen: true, hostSockets: 1 }), 'string');
  t.is(b.open('outbound', null, { hostSockets: 1 }), 'host-socket-limit');
  t.false(b.takeHostSockets(1));
  b.release(a);
  b.release(a);
  t.deepEqual([b.usage().outbound, b.usage().hostSockets], [2, 2], 'a ticket released twice gives back once');
  t.true(b.takeHostSockets(1));
});

test('bytes: a floor for every flow, a shared limit beyond it, and the thresholds that drive windows and pausing', (t) => {
  const bb = new BufferBudget(1000, 100);
  t.is(bb.room(0), 1000);
  bb.adjust(950);
  t.is(bb.room(0), 100, 'a flow holding nothing may still take its floor');
  t.is(bb.room(500), 50);
  bb.adjust(100);
  t.is(bb.room(500), 0);
  t.true(bb.full(100));
  t.false(bb.full(50), 'below its floor a flow is never paused');
  t.true(bb.tight(0));
  t.false(bb.relieved());
  bb.adjust(-300);
  t.true(bb.relieved());
  t.is(bb.peak, 1050);
});
