import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestClient, ApiError } from '../sdk/imkube.js';

/** A fetch that records requests and answers from a table of routes. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, method: init.method, headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined });
    const r = routes[`${init.method} ${url}`];
    if (!r) throw new TypeError('fetch failed');
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status ?? 200 });
  };
  return { fetch, calls };
}

test('login keeps the token and sends it as a bearer token', async () => {
  const { fetch, calls } = fakeFetch({
    'POST http://h/api/v1/sessions': { body: { token: 'jwt-1', userId: 'u1', expiresAt: 1 } },
    'GET http://h/api/v1/users?username=bob%20b': { body: { id: 'u2', username: 'bob b', displayName: 'Bob' } },
  });
  const rest = new RestClient({ baseUrl: 'http://h/', fetch });
  await rest.login({ username: 'alice', password: 'pw' });
  const bob = await rest.findUser('bob b');
  assert.equal(bob.id, 'u2');
  assert.equal(calls[0].headers.Authorization, undefined);
  assert.deepEqual(calls[0].body, { username: 'alice', password: 'pw' });
  assert.equal(calls[1].headers.Authorization, 'Bearer jwt-1');
});

test('errors carry the status and the server code', async () => {
  const tests = [
    { name: 'a taken username', give: { status: 409, body: { code: 'USERNAME_TAKEN', message: 'taken' } }, want: { status: 409, code: 'USERNAME_TAKEN' } },
    { name: 'bad credentials', give: { status: 401, body: { code: 'BAD_CREDENTIALS', message: 'no' } }, want: { status: 401, code: 'BAD_CREDENTIALS' } },
    { name: 'a body that is not JSON', give: { status: 502 }, want: { status: 502, code: 'HTTP_502' } },
  ];
  for (const tt of tests) {
    const { fetch } = fakeFetch({ 'POST /api/v1/users': tt.give });
    const rest = new RestClient({ fetch });
    await assert.rejects(rest.register({ username: 'x', password: 'y' }), (err) => {
      assert.ok(err instanceof ApiError, tt.name);
      assert.deepEqual({ status: err.status, code: err.code }, tt.want, tt.name);
      return true;
    });
  }
});

test('an unreachable server is a NETWORK error', async () => {
  const rest = new RestClient({ fetch: fakeFetch({}).fetch });
  await assert.rejects(rest.me(), { code: 'NETWORK', status: 0 });
});

test('group calls use the documented paths and bodies', async () => {
  const { fetch, calls } = fakeFetch({
    'POST /api/v1/groups': { status: 201, body: { id: 'g1', name: 'Team' } },
    'POST /api/v1/groups/g1/members': { body: {} },
    'DELETE /api/v1/groups/g1/members/u3': { status: 204 },
    'PATCH /api/v1/groups/g1': { body: { id: 'g1', name: 'New' } },
    'GET /api/v1/groups': { body: [{ id: 'g1' }] },
  });
  const rest = new RestClient({ fetch, token: 't' });
  assert.equal((await rest.createGroup({ name: 'Team', members: ['u2'] })).id, 'g1');
  await rest.addMembers('g1', ['u3']);
  await rest.removeMember('g1', 'u3');
  await rest.updateGroup('g1', { name: 'New' });
  assert.deepEqual(await rest.groups(), [{ id: 'g1' }]);
  assert.deepEqual(
    calls.map((c) => [c.method, c.url, c.body]),
    [
      ['POST', '/api/v1/groups', { name: 'Team', members: ['u2'] }],
      ['POST', '/api/v1/groups/g1/members', { userIds: ['u3'] }],
      ['DELETE', '/api/v1/groups/g1/members/u3', undefined],
      ['PATCH', '/api/v1/groups/g1', { name: 'New' }],
      ['GET', '/api/v1/groups', undefined],
    ],
  );
});

test('group join requests, open join and the private remark use their routes', async () => {
  const req = { id: 'r1', groupId: 'g 1', userId: 'u2', message: 'hi', status: 'pending', createdAt: 1 };
  const { fetch, calls } = fakeFetch({
    'POST /api/v1/groups/g%201/join-requests': { status: 201, body: req },
    'GET /api/v1/groups/g%201/join-requests': { body: [req] },
    'GET /api/v1/groups/g%201/join-requests?status=declined': { body: null },
    'POST /api/v1/groups/g%201/join-requests/r1/accept': { body: { ...req, status: 'accepted' } },
    'POST /api/v1/groups/g%201/join-requests/r1/decline': { status: 409, body: { code: 'REQUEST_ANSWERED', message: 'answered' } },
    'POST /api/v1/groups/g%201/join': { body: { id: 'g 1', myRole: 'member' } },
    'PATCH /api/v1/groups/g%201/members/me': { body: { id: 'g 1', remark: 'work' } },
  });
  const rest = new RestClient({ fetch, token: 't' });
  assert.deepEqual(await rest.requestJoin('g 1', 'hi'), req);
  await rest.requestJoin('g 1');
  assert.deepEqual(await rest.listJoinRequests('g 1'), [req]);
  assert.deepEqual(await rest.listJoinRequests('g 1', { status: 'declined' }), []);
  assert.equal((await rest.acceptJoinRequest('g 1', 'r1')).status, 'accepted');
  await assert.rejects(rest.declineJoinRequest('g 1', 'r1'), { status: 409, code: 'REQUEST_ANSWERED' });
  assert.equal((await rest.joinGroup('g 1')).myRole, 'member');
  assert.equal((await rest.setGroupRemark('g 1', 'work')).remark, 'work');
  assert.deepEqual(calls.map((c) => c.body), [{ message: 'hi' }, {}, undefined, undefined, undefined, undefined, undefined, { remark: 'work' }]);
  assert.ok(calls.every((c) => c.headers.Authorization === 'Bearer t'));
});
