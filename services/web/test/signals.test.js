import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, MemoryStorage, directConv } from '../sdk/imkube.js';
import { FakeServer, waitFor, sleep } from './fakeserver.js';

/** A client against server with short timeouts; closed when the test ends. */
function open(t, server, user, extra = {}) {
  const c = new ImkubeClient({
    url: 'ws://fake/ws',
    token: server.token(user),
    device: 'd1',
    WebSocket: server.WebSocket,
    ackTimeoutMs: 100,
    requestTimeoutMs: 300,
    pingIntervalMs: 2000,
    gapWaitMs: 20,
    syncIntervalMs: 150,
    backoff: { baseMs: 10, maxMs: 40 },
    ...extra,
  });
  const events = { message: [], receipt: [], readSync: [], typing: [], presence: [] };
  for (const name of Object.keys(events)) c.on(name, (e) => events[name].push(e));
  t.after(() => c.close());
  c.connect();
  return { c, events };
}

const online = (...cs) => waitFor(() => cs.every((x) => x.c.state === 'online'), 5000, 'online');

test('one-to-one messages are confirmed with one delivered per batch and receipts move peerDeliveredSeq', async (t) => {
  const s = new FakeServer();
  const alice = open(t, s, 'alice');
  const bob = open(t, s, 'bob');
  await online(alice, bob);
  const conv = directConv('alice', 'bob');
  await Promise.all([1, 2, 3].map((i) => alice.c.send({ to: { user: 'bob' }, body: `m${i}` })));
  await waitFor(() => alice.events.receipt.some((r) => r.kind === 'delivered' && r.seq === 3), 5000, 'delivered receipt');
  const delivered = s.framesOf('delivered', 'bob');
  assert.ok(delivered.length >= 1 && delivered.length <= 3, `bob sent ${delivered.length} delivered frames`);
  assert.deepEqual(delivered.at(-1), { t: 'delivered', conv, seq: 3 });
  assert.equal(alice.c.conversation(conv).peerDeliveredSeq, 3);
  assert.equal(s.framesOf('delivered', 'alice').length, 0, 'own messages are not confirmed');
  // Group messages are not confirmed (groups count reads).
  s.group('team', ['alice', 'bob']);
  await alice.c.send({ to: { group: 'team' }, body: 'hi team' });
  await waitFor(() => bob.events.message.length === 4, 5000, 'group message');
  await sleep(30);
  assert.equal(s.framesOf('delivered', 'bob').filter((f) => f.conv.startsWith('g:')).length, 0);
});

test('a read on one device moves the cursor and unread count of the others, online and offline', async (t) => {
  const s = new FakeServer();
  const storage = new MemoryStorage();
  const alice = open(t, s, 'alice');
  const phone = open(t, s, 'bob', { device: 'phone' });
  const laptop = open(t, s, 'bob', { device: 'laptop', storage });
  await online(alice, phone, laptop);
  const conv = directConv('alice', 'bob');
  for (let i = 1; i <= 3; i++) await alice.c.send({ to: { user: 'bob' }, body: `m${i}` });
  await waitFor(() => laptop.c.conversation(conv).unread === 3 && phone.c.conversation(conv).unread === 3, 5000, 'unread 3');
  phone.c.markRead(conv, 2);
  await waitFor(() => laptop.events.readSync.length === 1, 5000, 'readSync on the laptop');
  assert.deepEqual(laptop.events.readSync[0], { conv, seq: 2 });
  assert.equal(laptop.c.conversation(conv).unread, 1);
  assert.equal(laptop.c.conversation(conv).readSeq, 2);
  assert.equal(phone.events.readSync.length, 0, 'the reading device gets no readSync');
  await waitFor(() => phone.c.inboxSeq === 4 && laptop.c.inboxSeq === 4, 5000, 'both passed the read record');

  // The laptop is offline while the phone reads the rest; it syncs the record.
  await laptop.c.close();
  phone.c.markRead(conv);
  await sleep(30);
  const back = open(t, s, 'bob', { device: 'laptop', storage });
  await waitFor(() => back.events.readSync.length === 1, 5000, 'readSync by sync');
  assert.deepEqual(back.events.readSync[0], { conv, seq: 3 });
  assert.equal(back.c.conversation(conv).unread, 0);
  assert.equal(back.c.conversation(conv).readSeq, phone.c.conversation(conv).readSeq);
  assert.equal(back.events.message.length, 0, 'a read record is not a message');
});

test('typing is sent at most once per conversation per interval and arrives as an event', async (t) => {
  const s = new FakeServer();
  const alice = open(t, s, 'alice', { typingIntervalMs: 100 });
  const bob = open(t, s, 'bob');
  await online(alice, bob);
  const conv = directConv('alice', 'bob');
  for (let i = 0; i < 10; i++) alice.c.typing(conv);
  await waitFor(() => bob.events.typing.length === 1, 5000, 'typing');
  assert.deepEqual(bob.events.typing[0], { conv, user: 'alice' });
  assert.equal(s.framesOf('typing', 'alice').length, 1);
  await sleep(120);
  alice.c.typing(conv);
  await waitFor(() => bob.events.typing.length === 2, 5000, 'typing after the interval');
  assert.equal(alice.events.typing.length, 0);
});

test('subscribePresence gives the state now, on changes and again after a reconnect', async (t) => {
  const s = new FakeServer();
  const alice = open(t, s, 'alice');
  const bob = open(t, s, 'bob');
  await online(alice, bob);
  await alice.c.subscribePresence(['bob', 'carol']);
  await waitFor(() => alice.events.presence.length === 2, 5000, 'initial presence');
  assert.equal(alice.c.presence('bob').online, true);
  assert.equal(alice.c.presence('carol').online, false);
  s.presenceChange('bob', false, 1234);
  await waitFor(() => alice.c.presence('bob').online === false, 5000, 'bob offline');
  assert.equal(alice.c.presence('bob').lastSeen, 1234);
  s.cut('alice');
  await waitFor(() => s.framesOf('presence_sub', 'alice').length === 2, 5000, 'resubscribed after reconnect');
  assert.deepEqual(s.framesOf('presence_sub', 'alice')[1].users.sort(), ['bob', 'carol']);
  await alice.c.unsubscribePresence(['carol']);
  assert.deepEqual(s.framesOf('presence_unsub', 'alice')[0].users, ['carol']);
  assert.equal(alice.c.presence('carol'), undefined);
});

test('subscribePresence of a stranger rejects with FORBIDDEN and watches nothing', async (t) => {
  const s = new FakeServer();
  s.intercept = (conn, f) => (f.t === 'presence_sub' ? { t: 'error', id: f.id, code: 'FORBIDDEN', message: 'no', retryable: false } : undefined);
  const alice = open(t, s, 'alice');
  await online(alice);
  await assert.rejects(alice.c.subscribePresence(['mallory']), (e) => e.code === 'FORBIDDEN');
  s.cut('alice');
  await waitFor(() => alice.c.state === 'online' && s.connects === 2, 5000, 'reconnected');
  await sleep(30);
  assert.equal(s.framesOf('presence_sub', 'alice').length, 1, 'nothing to resubscribe');
});

test('reads() asks the REST API for the read count of a message', async (t) => {
  const s = new FakeServer();
  const calls = [];
  const rest = {
    reads: async (conv, seq) => {
      calls.push([conv, seq]);
      return { readCount: 2, unreadCount: 1, readers: ['bob', 'carol'] };
    },
    conversations: async () => [],
  };
  const alice = open(t, s, 'alice', { rest });
  await online(alice);
  assert.deepEqual(await alice.c.reads('g:team', 7), { readCount: 2, unreadCount: 1, readers: ['bob', 'carol'] });
  assert.deepEqual(calls, [['g:team', 7]]);
});
