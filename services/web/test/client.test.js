import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, MemoryStorage, backoffDelay, directConv } from '../sdk/imkube.js';
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
    sendDeadlineMs: 10000,
    ...extra,
  });
  const got = [];
  const states = [];
  c.on('message', (m) => got.push(m));
  c.on('state', (s) => states.push(s.state));
  t.after(() => c.close());
  c.connect();
  return { c, got, states };
}

const bodies = (msgs) => msgs.map((m) => m.body);
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

test('backoff delays are full-jitter and capped', () => {
  const tests = [
    { name: 'first attempt with the largest random stays under the base', give: { attempt: 0, r: 0.999 }, want: [0, 100] },
    { name: 'the ceiling doubles per attempt', give: { attempt: 3, r: 0.999 }, want: [700, 800] },
    { name: 'the cap holds for many attempts', give: { attempt: 50, r: 0.999 }, want: [900, 1000] },
    { name: 'a random of zero gives zero', give: { attempt: 5, r: 0 }, want: [0, 0] },
  ];
  for (const tt of tests) {
    const d = backoffDelay(tt.give.attempt, { baseMs: 100, maxMs: 1000 }, () => tt.give.r);
    assert.ok(d >= tt.want[0] && d <= tt.want[1], `${tt.name}: got ${d}`);
  }
});

test('auth is the first frame and send resolves with the ack', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  assert.deepEqual(s.received[0].frame, { t: 'auth', token: 'tok-alice', device: 'd1' });
  const ack = await c.send({ to: { user: 'bob' }, body: 'hi', cmid: 'c1' });
  assert.deepEqual({ cmid: ack.cmid, conv: ack.conv, seq: ack.seq }, { cmid: 'c1', conv: directConv('alice', 'bob'), seq: 1 });
  assert.equal(c.recent(ack.conv)[0].body, 'hi');
});

test('with drops, duplicates and reordering the app sees every message once, in order', async (t) => {
  const s = new FakeServer({ seed: 7, chaos: { drop: 0.15, dup: 0.15, reorder: 0.25 } });
  const { c, got } = open(t, s, 'bob');
  await waitFor(() => c.state === 'online', 5000, 'online');
  const n = 200;
  for (let i = 0; i < n; i++) {
    s.post(i % 3 === 0 ? 'carol' : 'alice', { user: 'bob' }, `m${i}`);
    if (i % 20 === 0) await sleep(1);
  }
  await waitFor(() => got.length >= n, 15000, `${n} messages (have ${got.length})`);
  await sleep(200);
  assert.equal(got.length, n, 'no duplicates');
  assert.deepEqual(bodies(got), range(n, (i) => `m${i}`));
  assert.equal(new Set(got.map((m) => m.mid)).size, n);
  for (const conv of new Set(got.map((m) => m.conv))) {
    const seqs = got.filter((m) => m.conv === conv).map((m) => m.seq);
    assert.deepEqual(seqs, range(seqs.length, (i) => i + 1), `${conv} in seq order`);
  }
  assert.equal(c.inboxSeq, n);
});

test('sends survive lost acks and duplicates: each cmid is stored once and acked once', async (t) => {
  const s = new FakeServer({ seed: 3, chaos: { drop: 0.3, dup: 0.2, reorder: 0.2 } });
  const { c } = open(t, s, 'alice', { maxInFlight: 4 });
  const acks = await Promise.all(range(50, (i) => c.send({ to: { user: 'bob' }, body: `s${i}` })));
  assert.equal(acks.length, 50);
  assert.equal(new Set(acks.map((a) => a.mid)).size, 50);
  const stored = s.convs.get(directConv('alice', 'bob')).msgs;
  assert.equal(stored.length, 50, 'retries did not store duplicates');
  assert.ok(s.framesOf('send').length > 50, 'some sends were retried');
});

test('a client that was offline catches up by paging sync from its cursor', async (t) => {
  const s = new FakeServer();
  const { c, got } = open(t, s, 'bob', { pageLimit: 10 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.post('alice', { user: 'bob' }, 'before');
  await waitFor(() => got.length === 1, 5000, 'first message');
  s.cut('bob');
  s.intercept = (conn, f) => (f.t === 'auth' ? null : undefined); // the server is down for a while
  await sleep(30);
  for (let i = 0; i < 35; i++) s.post('alice', { user: 'bob' }, `off${i}`);
  s.intercept = () => undefined;
  await waitFor(() => got.length === 36, 5000, 'offline messages');
  assert.deepEqual(bodies(got), ['before', ...range(35, (i) => `off${i}`)]);
  const syncs = s.framesOf('sync', 'bob').map((f) => f.after);
  assert.ok(syncs.includes(1) && syncs.includes(11) && syncs.includes(21) && syncs.includes(31), `paged syncs: ${syncs}`);
});

test('an inbox gap is filled by syncing exactly the missing range', async (t) => {
  const s = new FakeServer();
  const { c, got } = open(t, s, 'bob', { syncIntervalMs: 0, requestTimeoutMs: 5000 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  await sleep(20);
  s.received.length = 0;
  s.filter = (conn, f) => !(f.t === 'msg' && (f.inboxSeq === 3 || f.inboxSeq === 4));
  for (let i = 1; i <= 6; i++) s.post('alice', { user: 'bob' }, `g${i}`);
  await waitFor(() => got.length === 6, 5000, 'six messages');
  assert.deepEqual(bodies(got), ['g1', 'g2', 'g3', 'g4', 'g5', 'g6']);
  const syncs = s.framesOf('sync').map(({ after, limit }) => ({ after, limit }));
  assert.deepEqual(syncs, [{ after: 2, limit: 2 }]);
});

test('read-diffusion groups are pulled on notify, exactly the missing range', async (t) => {
  const s = new FakeServer({ readDiffusionAbove: 2 });
  s.group('big', ['alice', 'bob', 'carol']);
  for (let i = 1; i <= 3; i++) s.post('alice', { group: 'big' }, `early${i}`);
  const { c, got } = open(t, s, 'bob', { requestTimeoutMs: 5000 });
  await waitFor(() => got.length === 3, 5000, 'news from auth_ok');
  s.filter = (conn, f) => !(f.t === 'notify' && f.seq === 4);
  s.post('carol', { group: 'big' }, 'n4');
  s.post('carol', { group: 'big' }, 'n5');
  await waitFor(() => got.length === 5, 5000, 'notified messages');
  assert.deepEqual(bodies(got), ['early1', 'early2', 'early3', 'n4', 'n5']);
  const pulls = s.framesOf('pull').map(({ conv, from, to }) => ({ conv, from, to }));
  assert.deepEqual(pulls, [
    { conv: 'g:big', from: 1, to: 3 },
    { conv: 'g:big', from: 4, to: 5 },
  ]);
  assert.equal(c.conversation('g:big').readDiffusion, true);
});

test('a conversation gap in a group is pulled when the inbox cannot fill it', async (t) => {
  const s = new FakeServer();
  s.group('team', ['alice', 'bob']);
  const { c, got } = open(t, s, 'bob', { syncIntervalMs: 0, requestTimeoutMs: 5000 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.post('alice', { group: 'team' }, 't1');
  await waitFor(() => got.length === 1, 5000, 't1');
  // The server lost bob's inbox row of t2 (no write diffusion for it).
  const inbox = s.inbox.get('bob');
  s.filter = (conn, f) => f.body !== 't2';
  s.post('alice', { group: 'team' }, 't2');
  inbox.splice(inbox.length - 1, 1);
  s.post('alice', { group: 'team' }, 't3');
  // inboxSeq of t3 is 2 (t2 never got a row), so only the conv seq shows the gap.
  await waitFor(() => got.length === 3, 3000, 'group gap filled');
  assert.deepEqual(bodies(got), ['t1', 't2', 't3']);
  assert.deepEqual(s.framesOf('pull').map(({ from, to }) => ({ from, to })), [{ from: 2, to: 2 }]);
});

test('kicked stops the client and fails pending sends', async (t) => {
  const s = new FakeServer();
  const { c, states } = open(t, s, 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.holdAcks = true;
  const p = c.send({ to: { user: 'bob' }, body: 'x' });
  await sleep(20);
  s.kick('alice');
  await assert.rejects(p, { code: 'KICKED' });
  await sleep(100);
  assert.equal(c.state, 'kicked');
  assert.equal(s.connects, 1, 'no reconnect after kicked');
  assert.ok(states.includes('kicked'));
});

test('reconnect{afterMs} is honoured', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.askReconnect('alice', 1000);
  await sleep(100);
  assert.equal(s.connects, 1, 'waits before reconnecting');
  await waitFor(() => s.connects === 2 && c.state === 'online', 5000, 'reconnected');
});

test('a dropped connection reconnects with backoff and resends unacked sends with the same cmid', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.holdAcks = true;
  const p = c.send({ to: { user: 'bob' }, body: 'once', cmid: 'same' });
  await sleep(20);
  s.holdAcks = false;
  s.heldAcks = [];
  s.cut('alice');
  const ack = await p;
  assert.equal(ack.cmid, 'same');
  assert.ok(s.connects >= 2);
  assert.ok(s.framesOf('send').length >= 2);
  assert.equal(s.convs.get(ack.conv).msgs.length, 1);
});

test('error frames: retryable sends are retried after retryAfterMs, others fail', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice', { ackTimeoutMs: 5000 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  let limited = 0;
  s.intercept = (conn, f) => {
    if (f.t === 'send' && f.body === 'big') return { t: 'error', cmid: f.cmid, code: 'TOO_LARGE', message: 'too big', retryable: false };
    if (f.t === 'send' && f.body === 'busy' && limited++ < 2) {
      return { t: 'error', cmid: f.cmid, code: 'RATE_LIMITED', message: 'slow down', retryable: true, retryAfterMs: 30 };
    }
    return undefined;
  };
  await assert.rejects(c.send({ to: { user: 'bob' }, body: 'big' }), { code: 'TOO_LARGE' });
  const ack = await c.send({ to: { user: 'bob' }, body: 'busy', cmid: 'b1' });
  assert.equal(ack.cmid, 'b1');
  assert.deepEqual(s.framesOf('send').filter((f) => f.body === 'busy').map((f) => f.cmid), ['b1', 'b1', 'b1']);
});

test('at most maxInFlight sends wait for acks at once', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice', { maxInFlight: 3, ackTimeoutMs: 5000 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.holdAcks = true;
  const ps = range(10, (i) => c.send({ to: { user: 'bob' }, body: `f${i}` }));
  await sleep(50);
  assert.equal(s.framesOf('send').length, 3);
  s.holdAcks = false;
  s.releaseAcks();
  const acks = await Promise.all(ps);
  assert.deepEqual(acks.map((a) => a.seq), range(10, (i) => i + 1));
  assert.equal(s.framesOf('send').length, 10);
});

test('stored cursors make a new client sync only what is new, without repeats', async (t) => {
  const s = new FakeServer();
  const storage = new MemoryStorage();
  const first = open(t, s, 'bob', { storage });
  for (let i = 0; i < 5; i++) s.post('alice', { user: 'bob' }, `a${i}`);
  await waitFor(() => first.got.length === 5, 5000, 'first five');
  await first.c.close();
  for (let i = 0; i < 3; i++) s.post('alice', { user: 'bob' }, `b${i}`);
  s.received.length = 0;
  const second = open(t, s, 'bob', { storage });
  await waitFor(() => second.got.length === 3, 5000, 'three new');
  await sleep(50);
  assert.deepEqual(bodies(second.got), ['b0', 'b1', 'b2']);
  assert.equal(s.framesOf('sync')[0].after, 5);
  const conv = directConv('alice', 'bob');
  assert.deepEqual(bodies(second.c.recent(conv)), ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2']);
});

test('unread counts, markRead and read receipts', async (t) => {
  const s = new FakeServer();
  const bob = open(t, s, 'bob');
  const alice = open(t, s, 'alice');
  await waitFor(() => bob.c.state === 'online' && alice.c.state === 'online', 5000, 'online');
  const conv = directConv('alice', 'bob');
  for (let i = 0; i < 3; i++) await alice.c.send({ to: { user: 'bob' }, body: `u${i}` });
  await waitFor(() => bob.got.length === 3, 5000, 'three');
  assert.equal(bob.c.conversation(conv).unread, 3);
  assert.equal(alice.c.conversation(conv).unread, 0);
  const receipts = [];
  alice.c.on('receipt', (r) => r.kind === 'read' && receipts.push(r)); // delivered receipts come too
  bob.c.markRead(conv);
  assert.equal(bob.c.conversation(conv).unread, 0);
  await waitFor(() => receipts.length === 1, 5000, 'receipt');
  assert.deepEqual(s.framesOf('read', 'bob'), [{ t: 'read', conv, seq: 3 }]);
  assert.equal(alice.c.conversation(conv).peerReadSeq, 3);
  assert.deepEqual(bob.c.conversations().map((x) => x.conv), [conv]);
});

test('a bad token ends in state unauthenticated without reconnecting', async (t) => {
  const s = new FakeServer();
  const c = new ImkubeClient({ url: 'ws://fake/ws', token: 'forged', device: 'd1', WebSocket: s.WebSocket, backoff: { baseMs: 5, maxMs: 5 } });
  t.after(() => c.close());
  const errors = [];
  c.on('error', (e) => errors.push(e.code));
  c.connect();
  await waitFor(() => c.state === 'unauthenticated', 5000, 'unauthenticated');
  await sleep(50);
  assert.equal(s.connects, 1);
  assert.deepEqual(errors, ['UNAUTHENTICATED']);
});

test('messages from the sender\'s other device arrive, own acked sends are not repeated', async (t) => {
  const s = new FakeServer();
  const phone = open(t, s, 'alice', { device: 'phone' });
  const laptop = open(t, s, 'alice', { device: 'laptop' });
  await waitFor(() => phone.c.state === 'online' && laptop.c.state === 'online', 5000, 'online');
  await phone.c.send({ to: { user: 'bob' }, body: 'from phone' });
  s.post('bob', { user: 'alice' }, 'reply');
  await waitFor(() => laptop.got.length === 2 && phone.got.length === 2, 5000, 'both devices');
  await sleep(100);
  assert.deepEqual(bodies(laptop.got), ['from phone', 'reply']);
  assert.deepEqual(bodies(phone.got), ['from phone', 'reply']);
  assert.ok(phone.got[0].cmid, 'own message carries its cmid');
});

test('send after close fails at once with CLOSED', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  await c.close();
  await assert.rejects(c.send({ to: { user: 'bob' }, body: 'late' }), { code: 'CLOSED' });
});

test('the stored inbox cursor never passes a message the app has not been given', async (t) => {
  const s = new FakeServer();
  const storage = new MemoryStorage();
  const { c, got } = open(t, s, 'bob', { storage, syncIntervalMs: 0, requestTimeoutMs: 5000 });
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.post('alice', { user: 'bob' }, 'one');
  await waitFor(() => got.length === 1, 5000, 'one');
  // inboxSeq 2 is lost and the sync that would fill it goes unanswered.
  s.filter = (conn, f) => !(f.t === 'msg' && f.inboxSeq === 2);
  s.intercept = (conn, f) => (f.t === 'sync' ? null : undefined);
  s.post('alice', { user: 'bob' }, 'two');
  s.post('alice', { user: 'bob' }, 'three');
  await waitFor(() => s.framesOf('sync').length > 1, 5000, 'gap sync');
  await c.flush();
  const saved = await storage.get('imkube:bob:d1');
  assert.equal(saved.inboxSeq, 1);
  assert.deepEqual(bodies(got), ['one']);
});

test('reauth refreshes the token and reconnects with the new one, resending what was not acked', async (t) => {
  const s = new FakeServer();
  let refreshes = 0;
  const { c, states } = open(t, s, 'alice', {
    refresh: async () => {
      refreshes++;
      return s.token('alice') + '-2';
    },
  });
  s.tokens.set('tok-alice-2', 'alice');
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.holdAcks = true;
  const sent = c.send({ to: { user: 'bob' }, body: 'across the reauth', cmid: 'r1' });
  await waitFor(() => s.framesOf('send', 'alice').length === 1, 5000, 'send');
  s.reauth('alice');
  s.holdAcks = false;
  await waitFor(() => s.framesOf('auth').length === 2, 5000, 'second auth');
  assert.equal(refreshes, 1);
  assert.equal(s.framesOf('auth')[1].token, 'tok-alice-2');
  const ack = await sent;
  assert.equal(ack.cmid, 'r1');
  await waitFor(() => c.state === 'online', 5000, 'online again');
  assert.ok(!states.includes('unauthenticated'));
});

test('reauth with an ended session leaves the client unauthenticated', async (t) => {
  const s = new FakeServer();
  const { c } = open(t, s, 'bob', {
    refresh: async () => {
      throw Object.assign(new Error('session ended'), { status: 401 });
    },
  });
  const errors = [];
  c.on('error', (e) => errors.push(e.code));
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.reauth('bob');
  await waitFor(() => c.state === 'unauthenticated', 5000, 'unauthenticated');
  assert.deepEqual(errors, ['UNAUTHENTICATED']);
  assert.equal(s.framesOf('auth').length, 1, 'no reconnect with a dead token');
});
