// Media through the SDK against a real `imkube dev`: uploadAndSend with
// progress and a retried upload, the recipient's mediaUrl gives the same
// bytes, a non-member is refused (needs a global WebSocket: Node 22+, or
// Node 20 with --experimental-websocket as hack/browser.sh passes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ImkubeClient, RestClient, ApiError, mediaOf } from '../sdk/imkube.js';
import { startImkube } from './imkubedev.js';

/** @type {{base: string, ws: string, stop: () => Promise<void>}} */
let srv;
const clients = [];

before(async () => {
  srv = await startImkube('media');
});

after(async () => {
  for (const c of clients) await c.close();
  await srv?.stop();
});

async function account(username, fetchFn) {
  const rest = new RestClient({ baseUrl: srv.base, fetch: fetchFn });
  await rest.register({ username, password: `${username}-pw-123456`, displayName: username });
  const s = await rest.login({ username, password: `${username}-pw-123456` });
  return { rest, id: s.userId, token: s.token };
}

function client(acct, device) {
  const c = new ImkubeClient({ url: srv.ws, token: acct.token, device, rest: acct.rest, backoff: { baseMs: 50, maxMs: 500 } });
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

test('uploadAndSend retries a failed upload, reports progress and the recipient fetches the same bytes', { skip: !globalThis.WebSocket && 'no global WebSocket in this Node' }, async () => {
  let puts = 0;
  /** @type {typeof fetch} */
  const flaky = (url, init) => {
    if (init?.method === 'PUT' && puts++ === 0) return Promise.reject(new TypeError('connection reset'));
    return fetch(url, init);
  };
  const alice = await account('media-alice', flaky);
  const bob = await account('media-bob');
  const carol = await account('media-carol');
  const a = client(alice, 'a1');
  const b = client(bob, 'b1');
  await waitFor(() => a.c.state === 'online' && b.c.state === 'online', 'online');

  const data = new TextEncoder().encode('a report, bytes that must arrive unchanged\n'.repeat(100));
  const progress = [];
  const { ack, body } = await a.c.uploadAndSend(
    { name: 'report.txt', type: 'text/plain', size: data.byteLength, data },
    { to: { user: bob.id }, onProgress: (p) => progress.push(p) },
  );
  assert.ok(ack.mid, 'acked');
  assert.equal(puts, 2, 'the failed upload was retried');
  assert.deepEqual(progress.at(-1), { objectKey: body.objectKey, name: 'report.txt', loaded: data.byteLength, total: data.byteLength, attempt: 2 });

  await waitFor(() => b.got.length === 1, 'the message at bob');
  const m = b.got[0];
  assert.equal(m.kind, 'file');
  assert.deepEqual(mediaOf(m), { objectKey: body.objectKey, name: 'report.txt', size: data.byteLength, contentType: 'text/plain' });
  const url = await b.c.mediaUrl(body.objectKey);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), data);

  await assert.rejects(carol.rest.mediaUrl(body.objectKey), (err) => err instanceof ApiError && err.status === 403);
});
