// The SDK in Node against a real `imkube dev`: ordering, offline catch-up and
// retries over the real protocol (needs a global WebSocket: Node 22+, or
// Node 20 with --experimental-websocket as hack/browser.sh passes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, RestClient, MemoryStorage, directConv } from '../sdk/imkube.js';
import { startImkube } from './imkubedev.js';

/** @type {{base: string, ws: string, stop: () => Promise<void>}} */
let srv;
const clients = [];

before(async () => {
  srv = await startImkube('sdk');
});

after(async () => {
  for (const c of clients) await c.close();
  await srv?.stop();
});

async function account(username) {
  const rest = new RestClient({ baseUrl: srv.base });
  await rest.register({ username, password: `${username}-pw-123456`, displayName: username });
  const s = await rest.login({ username, password: `${username}-pw-123456` });
  return { rest, id: s.userId, token: s.token };
}

function client(acct, device, storage = new MemoryStorage()) {
  const c = new ImkubeClient({ url: srv.ws, token: acct.token, device, storage, rest: acct.rest, backoff: { baseMs: 50, maxMs: 500 } });
  const got = [];
  c.on('message', (m) => got.push(m));
  clients.push(c);
  c.connect();
  return { c, got };
}

async function waitFor(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the SDK delivers in order, catches up after being offline and keeps unread counts', { skip: !globalThis.WebSocket && 'no global WebSocket in this Node' }, async () => {
  const alice = await account('sdk-alice');
  const bob = await account('sdk-bob');
  const conv = directConv(alice.id, bob.id);
  const a = client(alice, 'a1');
  const storage = new MemoryStorage();
  const b = client(bob, 'b1', storage);
  await waitFor(() => a.c.state === 'online' && b.c.state === 'online', 'online');

  const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => a.c.send({ to: { user: bob.id }, body: `n${i}` })));
  assert.deepEqual(acks.map((x) => x.seq).sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1));
  await waitFor(() => b.got.length === 100, '100 messages at bob');
  assert.deepEqual(b.got.map((m) => m.seq), Array.from({ length: 100 }, (_, i) => i + 1));
  assert.equal(b.c.conversation(conv).unread, 100);

  // Bob replies: Alice's inbox has her own sends in it, which she must not see twice.
  await b.c.send({ to: { user: alice.id }, body: 'reply' });
  await waitFor(() => a.got.some((m) => m.body === 'reply'), 'reply at alice');
  assert.equal(a.got.length, 101);
  assert.equal(new Set(a.got.map((m) => m.mid)).size, 101);

  b.c.markRead(conv);
  await waitFor(() => a.c.conversation(conv).peerReadSeq === 101, 'read receipt at alice');

  // Bob goes offline, Alice sends 30, Bob comes back with his stored cursors.
  await b.c.close();
  for (let i = 0; i < 30; i++) await a.c.send({ to: { user: bob.id }, body: `off${i}` });
  const b2 = client(bob, 'b1', storage);
  await waitFor(() => b2.got.length === 30, '30 offline messages');
  assert.deepEqual(b2.got.map((m) => m.body), Array.from({ length: 30 }, (_, i) => `off${i}`));
  await b2.c.refreshConversations();
  assert.equal(b2.c.conversation(conv).unread, 30);
});

test('protocol edges against the real server: same cmid, too large, kicked, bad token', { skip: !globalThis.WebSocket && 'no global WebSocket in this Node' }, async () => {
  const alice = await account('edge-alice');
  const bob = await account('edge-bob');
  const a = client(alice, 'phone');
  await waitFor(() => a.c.state === 'online', 'online');

  const first = await a.c.send({ to: { user: bob.id }, body: 'once', cmid: 'fixed-cmid-1' });
  const again = await a.c.send({ to: { user: bob.id }, body: 'once', cmid: 'fixed-cmid-1' });
  assert.deepEqual({ mid: again.mid, seq: again.seq }, { mid: first.mid, seq: first.seq });

  await assert.rejects(a.c.send({ to: { user: bob.id }, body: 'x'.repeat(17 * 1024) }), { code: 'TOO_LARGE' });
  await assert.rejects(a.c.send({ to: { user: 'no-such-user' }, body: 'hello?' }), (err) => !err.retryable);

  // The same device id logging in again replaces the first connection.
  const kicked = [];
  a.c.on('kicked', (k) => kicked.push(k.reason));
  const a2 = client(alice, 'phone');
  await waitFor(() => a2.c.state === 'online' && a.c.state === 'kicked', 'kicked');
  assert.deepEqual(kicked, ['replaced']);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.c.state, 'kicked', 'a kicked client does not reconnect');
  assert.equal(a2.c.state, 'online');

  const forged = new ImkubeClient({ url: srv.ws, token: 'not-a-jwt', device: 'x', backoff: { baseMs: 10, maxMs: 10 } });
  clients.push(forged);
  forged.connect();
  await waitFor(() => forged.state === 'unauthenticated', 'unauthenticated');
});

test('signals against the real server: delivered and read ticks, read sync, typing, presence, n read', { skip: !globalThis.WebSocket && 'no global WebSocket in this Node' }, async () => {
  const alice = await account('sig-alice');
  const bob = await account('sig-bob');
  const carol = await account('sig-carol');
  const conv = directConv(alice.id, bob.id);
  const a = client(alice, 'a1');
  const phone = client(bob, 'phone');
  const laptopStorage = new MemoryStorage();
  const laptop = client(bob, 'laptop', laptopStorage);
  await waitFor(() => [a, phone, laptop].every((x) => x.c.state === 'online'), 'online');

  // Delivered comes by itself; read follows markRead.
  for (let i = 0; i < 3; i++) await a.c.send({ to: { user: bob.id }, body: `s${i}` });
  await waitFor(() => a.c.conversation(conv).peerDeliveredSeq === 3, 'delivered tick at alice');
  const synced = [];
  laptop.c.on('readSync', (r) => synced.push(r));
  phone.c.markRead(conv, 2);
  await waitFor(() => a.c.conversation(conv).peerReadSeq === 2, 'read tick at alice');
  await waitFor(() => synced.length === 1 && laptop.c.conversation(conv).unread === 1, 'read sync on the laptop');

  // The laptop is offline while the phone reads the rest: it converges by sync.
  await laptop.c.close();
  phone.c.markRead(conv);
  await waitFor(() => a.c.conversation(conv).peerReadSeq === 3, 'second read tick');
  const back = client(bob, 'laptop', laptopStorage);
  await waitFor(() => back.c.conversation(conv).readSeq === 3 && back.c.conversation(conv).unread === 0, 'laptop converged');

  // Typing reaches the other party once per burst.
  const typing = [];
  a.c.on('typing', (x) => typing.push(x));
  for (let i = 0; i < 5; i++) phone.c.typing(conv);
  await waitFor(() => typing.length === 1, 'typing at alice');
  assert.deepEqual(typing[0], { conv, user: bob.id });

  // Presence: a stranger is refused; bob is online, then offline after the grace period.
  await assert.rejects(a.c.subscribePresence([carol.id]), { code: 'FORBIDDEN' });
  await a.c.subscribePresence([bob.id]);
  await waitFor(() => a.c.presence(bob.id)?.online === true, 'bob online');

  // "n read" in a group: two of three others read the first message.
  const dave = await account('sig-dave');
  const g = await alice.rest.createGroup({ name: 'sig', members: [bob.id, carol.id, dave.id] });
  const ack = await a.c.send({ to: { group: g.id }, body: 'group hello' });
  const c = client(carol, 'c1');
  await waitFor(() => c.c.state === 'online', 'carol online');
  phone.c.markRead(g.conv, ack.seq);
  c.c.markRead(g.conv, ack.seq);
  let reads;
  for (let i = 0; i < 100; i++) {
    reads = await a.c.reads(g.conv, ack.seq);
    if (reads.readCount === 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(reads.readCount, 2);
  assert.equal(reads.unreadCount, 1);
  assert.deepEqual([...reads.readers].sort(), [bob.id, carol.id].sort());
});
