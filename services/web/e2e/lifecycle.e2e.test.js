// The SDK's message lifecycle in Node against a real `imkube dev`: recall,
// edit, delete for me, replies, mentions, pin and mute, and a device that was
// offline converging on the same view.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, RestClient, MemoryStorage, directConv } from '../sdk/imkube.js';
import { startImkube } from './imkubedev.js';

/** @type {{base: string, ws: string, stop: () => Promise<void>}} */
let srv;
const clients = [];

before(async () => {
  srv = await startImkube('lifecycle');
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

function client(acct, device) {
  const c = new ImkubeClient({ url: srv.ws, token: acct.token, device, storage: new MemoryStorage(), rest: acct.rest, backoff: { baseMs: 50, maxMs: 500 } });
  clients.push(c);
  c.connect();
  return c;
}

async function waitFor(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const view = (c, conv) => c.recent(conv).map((m) => `${m.seq}:${m.body}${m.recalled ? ':recalled' : ''}${m.edited ? ':edited' : ''}${m.replyTo ? `:re${m.replyTo}` : ''}`);

test('recall, edit, delete, replies and mentions converge on every device', { skip: !globalThis.WebSocket && 'no global WebSocket in this Node' }, async () => {
  const alice = await account('lc-alice');
  const bob = await account('lc-bob');
  const conv = directConv(alice.id, bob.id);
  const a = client(alice, 'a1');
  const b = client(bob, 'b1');
  await waitFor(() => a.state === 'online' && b.state === 'online', 'online');

  const one = await a.send({ to: { user: bob.id }, body: 'one' });
  await a.send({ to: { user: bob.id }, body: 'two', replyTo: one.seq, mentions: [bob.id] });
  const three = await a.send({ to: { user: bob.id }, body: 'three' });
  await waitFor(() => b.recent(conv).length === 3, 'three at bob');
  assert.equal(b.conversation(conv).mentions, 1);

  await a.edit(conv, one.seq, 'one!');
  await a.recall(conv, three.seq);
  await assert.rejects(b.recall(conv, one.seq), { code: 'FORBIDDEN' });
  await assert.rejects(b.edit(conv, one.seq, 'x'), { code: 'FORBIDDEN' });
  await b.deleteForMe(conv, [2]);
  const want = ['1:one!:edited', '3::recalled'];
  await waitFor(() => JSON.stringify(view(b, conv)) === JSON.stringify(want), 'bob sees the changes');
  await waitFor(() => JSON.stringify(view(a, conv)) === JSON.stringify(['1:one!:edited', '2:two:re1', '3::recalled']), 'alice sees hers').catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(view(a, conv))}`);
  });

  // A device of bob's that was never online syncs into the same view.
  const b2 = client(bob, 'b2');
  await waitFor(() => JSON.stringify(view(b2, conv)) === JSON.stringify(want), 'the new device converges');

  // Pin and mute through the REST API; the server's list agrees.
  await b.pin(conv);
  await b.mute(conv);
  const list = await bob.rest.conversations();
  assert.equal(list[0].conv, conv);
  assert.equal(list[0].pinned, true);
  assert.equal(list[0].muted, true);
  assert.equal(list[0].last.kind, 'recall');
  assert.equal(list[0].last.preview, '');
  const pushed = [];
  b.on('message', (m) => pushed.push(m));
  await a.send({ to: { user: bob.id }, body: 'quiet' });
  await waitFor(() => pushed.some((m) => m.body === 'quiet'), 'the muted push');
  assert.equal(pushed.find((m) => m.body === 'quiet').muted, true);
});
