import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, MemoryStorage, RestClient } from '../sdk/imkube.js';
import { FakeServer, waitFor, sleep } from './fakeserver.js';

function open(t, server, user, extra = {}) {
  const c = new ImkubeClient({
    url: 'ws://fake/ws',
    token: server.token(user),
    device: 'd1',
    WebSocket: server.WebSocket,
    ackTimeoutMs: 100,
    requestTimeoutMs: 300,
    gapWaitMs: 20,
    syncIntervalMs: 150,
    backoff: { baseMs: 10, maxMs: 40 },
    ...extra,
  });
  const events = { event: [], friendRequest: [], friendAdded: [], friendRemoved: [], message: [], kicked: [] };
  for (const name of Object.keys(events)) c.on(name, (e) => events[name].push(e));
  t.after(() => c.close());
  c.connect();
  return { c, events };
}

test('social events arrive once, in inbox order, pushed or synced after being offline', async (t) => {
  const s = new FakeServer();
  const storage = new MemoryStorage();
  const bob = open(t, s, 'bob', { storage });
  await waitFor(() => bob.c.state === 'online', 5000, 'online');
  const req = { id: 'r1', from: 'alice', to: 'bob', message: 'hi', status: 'pending', createdAt: 1 };
  s.event('bob', 'friend_request', req);
  await waitFor(() => bob.events.friendRequest.length === 1, 5000, 'friendRequest');
  assert.deepEqual(bob.events.friendRequest[0], req);
  assert.equal(bob.events.event[0].kind, 'friend_request');
  assert.equal(bob.c.inboxSeq, 1);

  await bob.c.close();
  s.event('bob', 'friend_added', { userId: 'alice', requestId: 'r1', since: 2 }, false);
  s.post('alice', { user: 'bob' }, 'hello friend');
  s.event('bob', 'friend_removed', { userId: 'alice' }, false);
  const back = open(t, s, 'bob', { storage });
  await waitFor(() => back.events.friendRemoved.length === 1, 5000, 'friendRemoved by sync');
  assert.deepEqual(back.events.event.map((e) => e.kind), ['friend_added', 'friend_removed']);
  assert.deepEqual(back.events.friendAdded, [{ userId: 'alice', requestId: 'r1', since: 2 }]);
  assert.equal(back.events.message.length, 1, 'an event is not a message');
  assert.equal(back.c.inboxSeq, 4);
  await sleep(50);
  assert.equal(back.events.event.length, 2, 'nothing twice');
});

test('a revoked session is kicked with its reason and does not reconnect', async (t) => {
  const s = new FakeServer();
  const bob = open(t, s, 'bob');
  await waitFor(() => bob.c.state === 'online', 5000, 'online');
  const connects = s.connects;
  for (const conn of [...s.conns]) s._send(conn, { t: 'kicked', reason: 'password_changed' });
  await waitFor(() => bob.c.state === 'kicked', 5000, 'kicked');
  assert.deepEqual(bob.events.kicked.map((k) => k.reason), ['password_changed']);
  await sleep(100);
  assert.equal(s.connects, connects, 'no reconnect after kicked');
});

/** A fetch that records requests and answers from a table of routes. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, method: init.method, body: init.body ? JSON.parse(init.body) : undefined, auth: init.headers.Authorization });
    const r = routes[`${init.method} ${url}`];
    if (!r) throw new TypeError('fetch failed');
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status ?? 200 });
  };
  return { fetch, calls };
}

test('friends, blocks and session calls use the documented paths and bodies', async () => {
  const { fetch, calls } = fakeFetch({
    'POST /api/v1/friends/requests': { status: 201, body: { id: 'r1', status: 'pending' } },
    'GET /api/v1/friends/requests?direction=out&status=pending': { body: [{ id: 'r1' }] },
    'POST /api/v1/friends/requests/r1/accept': { body: { id: 'r1', status: 'accepted' } },
    'POST /api/v1/friends/requests/r1/decline': { status: 409, body: { code: 'REQUEST_ANSWERED', message: 'answered' } },
    'GET /api/v1/friends': { body: [{ userId: 'u2' }] },
    'PATCH /api/v1/friends/u2': { status: 204 },
    'DELETE /api/v1/friends/u2': { status: 204 },
    'PUT /api/v1/blocks/u3': { status: 204 },
    'DELETE /api/v1/blocks/u3': { status: 204 },
    'GET /api/v1/blocks': { body: [] },
    'PATCH /api/v1/users/me': { body: { id: 'u1', dmPolicy: 'friends' } },
    'GET /api/v1/sessions': { body: [{ id: 's1', current: true }] },
    'DELETE /api/v1/sessions/s2': { status: 204 },
    'POST /api/v1/users/me/password': { status: 204 },
    'POST /api/v1/sessions/logout': { status: 204 },
    'DELETE /api/v1/users/me': { status: 204 },
  });
  const rest = new RestClient({ fetch, token: 'jwt' });
  assert.equal((await rest.sendFriendRequest('u2', 'hi')).status, 'pending');
  assert.deepEqual(calls.at(-1).body, { userId: 'u2', message: 'hi' });
  assert.equal((await rest.friendRequests({ direction: 'out', status: 'pending' })).length, 1);
  assert.equal((await rest.acceptFriendRequest('r1')).status, 'accepted');
  await assert.rejects(rest.declineFriendRequest('r1'), { status: 409, code: 'REQUEST_ANSWERED' });
  assert.equal((await rest.friends())[0].userId, 'u2');
  await rest.setRemark('u2', 'Bee');
  assert.deepEqual(calls.at(-1).body, { remark: 'Bee' });
  await rest.removeFriend('u2');
  await rest.block('u3');
  await rest.unblock('u3');
  assert.deepEqual(await rest.blocks(), []);
  assert.equal((await rest.updateMe({ dmPolicy: 'friends' })).dmPolicy, 'friends');
  assert.equal((await rest.listSessions())[0].current, true);
  await rest.revokeSession('s2');
  await rest.changePassword('old-password', 'new-password');
  assert.deepEqual(calls.at(-1).body, { current: 'old-password', new: 'new-password' });
  await rest.logout();
  assert.equal(rest.token, '', 'logout forgets the token');
  rest.token = 'jwt2';
  await rest.deleteAccount('pw');
  assert.deepEqual(calls.at(-1).body, { password: 'pw' });
  assert.equal(rest.token, '');
});
