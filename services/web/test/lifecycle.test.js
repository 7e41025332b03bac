import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, directConv } from '../sdk/imkube.js';
import { FakeServer, waitFor } from './fakeserver.js';

/** @returns {{c: ImkubeClient, events: any[]}} */
function open(t, server, user, device, extra = {}) {
  const c = new ImkubeClient({
    url: 'ws://fake/ws',
    token: server.token(user),
    device,
    WebSocket: server.WebSocket,
    ackTimeoutMs: 100,
    requestTimeoutMs: 500,
    gapWaitMs: 20,
    syncIntervalMs: 150,
    backoff: { baseMs: 10, maxMs: 40 },
    ...extra,
  });
  const events = [];
  for (const name of ['recall', 'edit', 'delete', 'groupEvent']) c.on(name, (e) => events.push({ name, ...e }));
  t.after(() => c.close());
  c.connect();
  return { c, events };
}

const view = (c, conv) => c.recent(conv).map((m) => `${m.seq}:${m.body}${m.recalled ? ':recalled' : ''}${m.edited ? ':edited' : ''}`);

test('recall, edit and delete keep the local store consistent on every device, online or not', async (t) => {
  const s = new FakeServer({ seed: 3, chaos: { drop: 0.1, dup: 0.1, reorder: 0.2 } });
  const conv = directConv('alice', 'bob');
  const { c: alice } = open(t, s, 'alice', 'a1');
  const { c: bob, events } = open(t, s, 'bob', 'b1');
  await waitFor(() => alice.state === 'online' && bob.state === 'online', 5000, 'online');
  const a1 = await alice.send({ to: { user: 'bob' }, body: 'one', cmid: 'c1' });
  const a2 = await alice.send({ to: { user: 'bob' }, body: 'two', cmid: 'c2', replyTo: a1.seq, mentions: ['bob'] });
  await alice.send({ to: { user: 'bob' }, body: 'three', cmid: 'c3' });
  assert.deepEqual(s.framesOf('send', 'alice')[1], { t: 'send', cmid: 'c2', to: { user: 'bob' }, kind: 'text', body: 'two', replyTo: 1, mentions: ['bob'] });
  await waitFor(() => bob.recent(conv).length === 3, 5000, 'bob has three');
  assert.equal(bob.recent(conv)[1].replyTo, a1.seq);
  assert.deepEqual(bob.recent(conv)[1].mentions, ['bob']);
  assert.equal(bob.conversation(conv).mentions, 1);

  await alice.recall(conv, a2.seq);
  await alice.edit(conv, a1.seq, 'one!');
  await assert.rejects(bob.edit(conv, a1.seq, 'x'), { code: 'FORBIDDEN' });
  await bob.deleteForMe(conv, [3]);
  const want = ['1:one!:edited', '2::recalled'];
  await waitFor(() => JSON.stringify(view(bob, conv)) === JSON.stringify(want), 5000, 'bob sees the changes');
  const mine = ['1:one!:edited', '2::recalled', '3:three'];
  await waitFor(() => JSON.stringify(view(alice, conv)) === JSON.stringify(mine), 5000, 'alice sees her changes');
  assert.deepEqual(events.map((e) => e.name).sort(), ['delete', 'edit', 'recall']);
  assert.equal(bob.conversation(conv).mentions, 1, 'records are no messages: they count nothing');
  assert.equal(bob.conversation(conv).unread, 3, 'the three messages, not the records');

  // A device that was never online syncs into the same view.
  const { c: bob2 } = open(t, s, 'bob', 'b2');
  await waitFor(() => JSON.stringify(view(bob2, conv)) === JSON.stringify(want), 5000, 'the new device converges');
});

test('pin and mute go through the REST client and order the list', async (t) => {
  const s = new FakeServer();
  const patches = [];
  const rest = {
    conversations: async () => [],
    patchConversation: async (conv, patch) => patches.push([conv, patch]),
  };
  const { c } = open(t, s, 'carol', 'c1', { rest });
  await waitFor(() => c.state === 'online', 5000, 'online');
  s.post('dave', { user: 'carol' }, 'old');
  s.post('erin', { user: 'carol' }, 'new');
  await waitFor(() => c.conversations().length === 2, 5000, 'two conversations');
  assert.equal(c.conversations()[0].conv, directConv('carol', 'erin'));
  await c.pin(directConv('carol', 'dave'));
  await c.mute(directConv('carol', 'erin'));
  assert.deepEqual(patches, [[directConv('carol', 'dave'), { pinned: true }], [directConv('carol', 'erin'), { muted: true }]]);
  const list = c.conversations();
  assert.equal(list[0].conv, directConv('carol', 'dave'));
  assert.equal(list[0].pinned, true);
  assert.equal(list[1].muted, true);
});
