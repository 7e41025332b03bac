// Browser test: two people chat through the demo page in headless Debian
// Chromium against a fresh `imkube dev` (run by hack/browser.sh, make test-browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startImkube, OUT } from './imkubedev.js';

const CHROMIUM = process.env.IMKUBE_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
const WAIT_MS = 20000;

let base = '';
/** @type {Awaited<ReturnType<typeof startImkube>> | null} */
let srv = null;
/** @type {import('playwright-core').Browser | null} */
let browser = null;

before(async () => {
  srv = await startImkube('browser');
  base = srv.base;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true, timeout: 60000 });
});

after(async () => {
  await browser?.close().catch(() => {});
  await srv?.stop();
});

/** Opens the demo in a new context (its own storage, like a separate browser). */
async function openWindow(name) {
  const context = await /** @type {import('playwright-core').Browser} */ (browser).newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  context.on('close', () => fs.writeFileSync(path.join(OUT, `${name}-console.log`), logs.join('\n')));
  await page.goto(base);
  return { context, page };
}

async function enter(page, username, register) {
  await page.getByTestId('username').fill(username);
  await page.getByTestId('password').fill(`${username}-secret-pw`);
  if (register) {
    await page.getByTestId('display-name').fill(username[0].toUpperCase() + username.slice(1));
    await page.getByTestId('register').click();
  } else {
    await page.getByTestId('login').click();
  }
  await page.getByTestId('app').waitFor({ state: 'visible' });
  await page.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
}

async function send(page, body) {
  await page.getByTestId('compose-input').fill(body);
  await page.getByTestId('compose-input').press('Enter');
}

/** Waits until the open chat shows at least n messages and returns all bodies (callers assert the exact list). */
async function bodies(page, n) {
  const loc = page.getByTestId('message-body');
  await page.waitForFunction((want) => document.querySelectorAll('[data-testid="message-body"]').length >= want, n, { timeout: WAIT_MS });
  return loc.allTextContents();
}

async function allSent(page, n) {
  await page.waitForFunction(
    (want) => document.querySelectorAll('[data-testid="message"][data-state="sent"], [data-testid="message"][data-state="delivered"], [data-testid="message"][data-state="read"]').length >= want,
    n,
    { timeout: WAIT_MS },
  );
}

const shot = (page, name) => page.screenshot({ path: path.join(OUT, `${name}.png`) });
const numbered = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `message ${String(from + i).padStart(2, '0')}`);

test('Alice and Bob chat in two browser windows; Bob catches up after being offline', async () => {
  const bob = await openWindow('bob');
  await enter(bob.page, 'bob', true);
  const alice = await openWindow('alice');
  await enter(alice.page, 'alice', true);

  // Alice starts a chat with Bob by username and sends 20 messages.
  await alice.page.getByTestId('new-chat-username').fill('bob');
  await alice.page.getByTestId('new-chat-start').click();
  await alice.page.locator('[data-testid="chat-title"]', { hasText: 'Bob' }).waitFor();
  for (const body of numbered(1, 20)) await send(alice.page, body);
  await allSent(alice.page, 20);

  // Bob sees the conversation with an unread badge and all 20 messages in order.
  await bob.page.getByTestId('unread').waitFor();
  await bob.page.getByTestId('conv').first().click();
  assert.deepEqual(await bodies(bob.page, 20), numbered(1, 20));
  await alice.page.locator('[data-testid="message"][data-state="read"]').last().waitFor();
  await shot(alice.page, 'alice-1');
  await shot(bob.page, 'bob-1');

  // Bob goes offline; Alice sends 5 more.
  await bob.context.close();
  for (const body of numbered(21, 25)) await send(alice.page, body);
  await allSent(alice.page, 25);

  // Bob comes back in a new window, logs in and sees the 5 new messages.
  const bob2 = await openWindow('bob-again');
  await enter(bob2.page, 'bob', false);
  await bob2.page.locator('[data-testid="unread"]', { hasText: /^5$/ }).waitFor();
  await shot(bob2.page, 'bob-2-list');
  await bob2.page.getByTestId('conv').first().click();
  const seen = await bodies(bob2.page, 25);
  assert.deepEqual(seen.slice(-5), numbered(21, 25));
  assert.deepEqual(seen, numbered(1, 25));
  // Bob answers; Alice gets the reply after her own 25 and sees them read.
  await send(bob2.page, 'Got all 25, thanks!');
  await allSent(bob2.page, 1);
  assert.deepEqual(await bodies(alice.page, 26), [...numbered(1, 25), 'Got all 25, thanks!']);
  await alice.page.locator('[data-testid="message"][data-seq="25"][data-state="read"]').waitFor();
  await shot(alice.page, 'alice-2');
  await shot(bob2.page, 'bob-2');
  await bob2.context.close();
  await alice.context.close();
});

test('a group: create it with a member, add another, everyone sees the messages in order', async () => {
  const windows = {};
  for (const name of ['dave', 'erin', 'carol']) {
    windows[name] = await openWindow(name);
    await enter(windows[name].page, name, true);
  }
  const { carol, dave, erin } = windows;
  await carol.page.locator('#group-box summary').click();
  await carol.page.getByTestId('group-name').fill('Launch');
  await carol.page.getByTestId('group-members').fill('dave');
  await carol.page.getByTestId('group-create').click();
  await carol.page.locator('[data-testid="chat-title"]', { hasText: 'Launch' }).waitFor();
  await carol.page.getByTestId('add-member-username').fill('erin');
  await carol.page.getByTestId('add-member').click();
  await carol.page.locator('[data-testid="side-error"]', { hasText: 'Member added' }).waitFor();
  const lines = ['kickoff at 10', 'bring the slides', 'room 4'];
  for (const body of lines) await send(carol.page, body);
  await allSent(carol.page, 3);
  for (const w of [dave, erin]) {
    await w.page.locator('[data-testid="conv"]', { hasText: 'Launch' }).click();
    assert.deepEqual(await bodies(w.page, 3), lines);
  }
  await send(erin.page, 'see you there');
  assert.deepEqual(await bodies(carol.page, 4), [...lines, 'see you there']);
  assert.deepEqual(await bodies(dave.page, 4), [...lines, 'see you there']);
  await shot(dave.page, 'dave-group');
  for (const w of Object.values(windows)) await w.context.close();
});

test('the reconnect indicator follows a server restart and a message typed offline is delivered after it', async () => {
  const w = await openWindow('frank');
  await enter(w.page, 'frank', true);
  const g = await openWindow('gina');
  await enter(g.page, 'gina', true);
  await w.page.getByTestId('new-chat-username').fill('gina');
  await w.page.getByTestId('new-chat-start').click();
  await send(w.page, 'before the restart');
  await allSent(w.page, 1);

  const s = /** @type {NonNullable<typeof srv>} */ (srv);
  await s.kill();
  await w.page.locator('[data-testid="conn-state"][data-state="offline"]').waitFor();
  await send(w.page, 'typed while offline');
  await w.page.locator('[data-testid="message"][data-state="sending"]').waitFor();
  await shot(w.page, 'frank-offline');

  await s.restart();
  await w.page.locator('[data-testid="conn-state"][data-state="online"]').waitFor({ timeout: 45000 });
  await allSent(w.page, 2);
  await g.page.locator('[data-testid="conv"]', { hasText: 'frank' }).click();
  assert.deepEqual(await bodies(g.page, 2), ['before the restart', 'typed while offline']);

  // A message the server refuses (over 16 KiB) shows as failed with a retry button.
  await send(w.page, 'é'.repeat(9000));
  await w.page.locator('[data-testid="message"][data-state="failed"]').waitFor();
  await w.page.getByTestId('retry').click();
  await w.page.locator('[data-testid="message"][data-state="failed"]').waitFor();
  await shot(w.page, 'frank-failed');
  await w.context.close();
  await g.context.close();
});

test('the SDK modules load in the browser and IndexedDBStorage keeps values', async () => {
  const { page, context } = await openWindow('sdk-in-browser');
  const got = await page.evaluate(async () => {
    const sdk = await import('/sdk/imkube.js');
    const store = new sdk.IndexedDBStorage('imkube-e2e');
    await store.set('k', { inboxSeq: 7, convs: { 'u:a:b': { seq: 3 } } });
    const again = new sdk.IndexedDBStorage('imkube-e2e');
    return { value: await again.get('k'), missing: await again.get('nope'), conv: sdk.directConv('b', 'a') };
  });
  assert.deepEqual(got, { value: { inboxSeq: 7, convs: { 'u:a:b': { seq: 3 } } }, missing: undefined, conv: 'u:a:b' });
  await context.close();
});

test('an image and a file sent between two windows: the image shows inline, the file is a download link', async () => {
  const hugo = await openWindow('hugo');
  await enter(hugo.page, 'hugo', true);
  const iris = await openWindow('iris');
  await enter(iris.page, 'iris', true);
  await iris.page.getByTestId('new-chat-username').fill('hugo');
  await iris.page.getByTestId('new-chat-start').click();
  await iris.page.locator('[data-testid="chat-title"]', { hasText: 'Hugo' }).waitFor();

  // A 40x30 PNG made by the browser, then a small text file.
  const png = Buffer.from(
    await iris.page.evaluate(async () => {
      const c = new OffscreenCanvas(40, 30);
      const g = /** @type {OffscreenCanvasRenderingContext2D} */ (c.getContext('2d'));
      g.fillStyle = '#3a7';
      g.fillRect(0, 0, 40, 30);
      const blob = await c.convertToBlob({ type: 'image/png' });
      return [...new Uint8Array(await blob.arrayBuffer())];
    }),
  );
  await iris.page.getByTestId('attach').setInputFiles({ name: 'square.png', mimeType: 'image/png', buffer: png });
  await allSent(iris.page, 1);
  await iris.page.getByTestId('attach').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('meeting notes\n') });
  await allSent(iris.page, 2);

  await hugo.page.getByTestId('unread').waitFor();
  await hugo.page.getByTestId('conv').first().click();
  const img = hugo.page.getByTestId('media-image');
  await img.waitFor();
  await hugo.page.waitForFunction(() => {
    const i = /** @type {HTMLImageElement|null} */ (document.querySelector('[data-testid="media-image"]'));
    return !!i && i.complete && i.naturalWidth > 0;
  });
  const link = hugo.page.getByTestId('media-link').last();
  await hugo.page.waitForFunction(() => {
    const links = document.querySelectorAll('[data-testid="media-link"]');
    const a = /** @type {HTMLAnchorElement|undefined} */ (links[links.length - 1]);
    return !!a && a.href.includes('/media-store/');
  });
  assert.match(await link.textContent() ?? '', /notes\.txt/);
  const text = await hugo.page.evaluate(async () => {
    const links = document.querySelectorAll('[data-testid="media-link"]');
    return (await fetch(/** @type {HTMLAnchorElement} */ (links[links.length - 1]).href)).text();
  });
  assert.equal(text, 'meeting notes\n');
  await shot(hugo.page, 'hugo-media');
  await iris.context.close();
  await hugo.context.close();
});

test('recall and edit in the demo: the other window shows the edited body, then the recalled placeholder', async () => {
  const carol = await openWindow('quinn');
  await enter(carol.page, 'quinn', true);
  const dave = await openWindow('ravi');
  await enter(dave.page, 'ravi', true);
  await dave.page.getByTestId('new-chat-username').fill('quinn');
  await dave.page.getByTestId('new-chat-start').click();
  await dave.page.locator('[data-testid="chat-title"]', { hasText: 'Quinn' }).waitFor();
  await send(dave.page, 'first draft');
  await allSent(dave.page, 1);
  await carol.page.getByTestId('conv').first().click();
  assert.deepEqual(await bodies(carol.page, 1), ['first draft']);

  // Dave edits his message (the demo asks with a prompt).
  dave.page.once('dialog', (d) => d.accept('final text'));
  const mine = dave.page.locator('[data-testid="message"][data-seq="1"]');
  await mine.hover();
  await mine.getByTestId('edit').click();
  await carol.page.locator('[data-testid="message"][data-seq="1"] [data-testid="edited"]').waitFor();
  assert.deepEqual(await carol.page.getByTestId('message-body').allTextContents(), ['final text']);
  await shot(carol.page, 'carol-edited');

  // Dave recalls it: both windows show the placeholder, the list preview is empty of the text.
  await mine.hover();
  await mine.getByTestId('recall').click();
  await carol.page.locator('[data-testid="message-body"]', { hasText: '(message recalled)' }).waitFor();
  await dave.page.locator('[data-testid="message-body"]', { hasText: '(message recalled)' }).waitFor();
  assert.equal(await carol.page.getByTestId('edited').count(), 0);
  assert.match(await carol.page.getByTestId('conv-preview').first().textContent(), /recalled/);
  await shot(carol.page, 'carol-recalled');
  await carol.context.close();
  await dave.context.close();
});

test('signals in the demo: delivered and read ticks, typing, online dot and "n read" in a group', async () => {
  const windows = {};
  for (const name of ['ivan', 'judy', 'heidi']) {
    windows[name] = await openWindow(name);
    await enter(windows[name].page, name, true);
  }
  const { heidi, ivan, judy } = windows;
  await heidi.page.getByTestId('new-chat-username').fill('ivan');
  await heidi.page.getByTestId('new-chat-start').click();
  await heidi.page.locator('[data-testid="chat-title"]', { hasText: 'Ivan' }).waitFor();
  await send(heidi.page, 'are you there?');
  // Ivan's page received it (the SDK confirms by itself): delivered, not read yet.
  await heidi.page.locator('[data-testid="message"][data-state="delivered"]').waitFor();
  // Ivan is online: a green dot next to his name.
  await heidi.page.locator('[data-testid="presence"][data-online="true"]').first().waitFor();
  // Ivan opens the chat: read.
  await ivan.page.locator('[data-testid="conv"]', { hasText: 'Heidi' }).click();
  await heidi.page.locator('[data-testid="message"][data-state="read"]').waitFor();
  // Ivan types: Heidi sees it.
  await ivan.page.getByTestId('compose-input').pressSequentially('yes, one sec');
  await heidi.page.locator('[data-testid="typing"]', { hasText: 'Ivan is typing' }).waitFor();
  await shot(heidi.page, 'heidi-typing');

  // A group of three: Heidi's message is read by both others.
  await heidi.page.locator('#group-box summary').click();
  await heidi.page.getByTestId('group-name').fill('Signals');
  await heidi.page.getByTestId('group-members').fill('ivan, judy');
  await heidi.page.getByTestId('group-create').click();
  await heidi.page.locator('[data-testid="chat-title"]', { hasText: 'Signals' }).waitFor();
  await send(heidi.page, 'who has read this?');
  await heidi.page.locator('[data-testid="read-count"]', { hasText: '0 read' }).waitFor();
  await ivan.page.locator('[data-testid="conv"]', { hasText: 'Signals' }).click();
  await heidi.page.locator('[data-testid="read-count"]', { hasText: '1 read' }).waitFor();
  await judy.page.locator('[data-testid="conv"]', { hasText: 'Signals' }).click();
  await heidi.page.locator('[data-testid="read-count"]', { hasText: '2 read' }).waitFor();
  await shot(heidi.page, 'heidi-group-read');
  for (const w of Object.values(windows)) await w.context.close();
});

test('friends in the demo: a request is accepted from the list, the friend opens a chat, a block stops messages', async () => {
  const mallory = await openWindow('mallory');
  await enter(mallory.page, 'mallory', true);
  const nina = await openWindow('nina');
  await enter(nina.page, 'nina', true);

  await mallory.page.locator('#friends-box summary').click();
  await mallory.page.getByTestId('friend-username').fill('nina');
  await mallory.page.getByTestId('friend-add').click();
  await mallory.page.locator('[data-testid="side-error"]', { hasText: 'Friend request sent' }).waitFor();

  // Nina's request list fills from the event (no reload) and she accepts.
  await nina.page.locator('[data-testid="friend-badge"]', { hasText: /^1$/ }).waitFor();
  await nina.page.locator('[data-testid="friend-request"]', { hasText: 'Mallory' }).waitFor();
  await nina.page.getByTestId('friend-accept').click();
  await nina.page.locator('[data-testid="friend"]', { hasText: 'Mallory' }).waitFor();
  await mallory.page.locator('[data-testid="friend"]', { hasText: 'Nina' }).waitFor();
  assert.equal(await nina.page.getByTestId('friend-request').count(), 0);

  // Mallory opens the chat from his friend list; Nina blocks him from hers.
  await mallory.page.locator('[data-testid="friend"] .who', { hasText: 'Nina' }).click();
  await mallory.page.locator('[data-testid="chat-title"]', { hasText: 'Nina' }).waitFor();
  await send(mallory.page, 'hi nina');
  await allSent(mallory.page, 1);
  await nina.page.locator('[data-testid="conv"]', { hasText: 'Mallory' }).click();
  assert.deepEqual(await bodies(nina.page, 1), ['hi nina']);
  await nina.page.locator('[data-testid="block"]', { hasText: 'Block' }).click();
  await nina.page.locator('[data-testid="block"]', { hasText: 'Unblock' }).waitFor();
  await send(mallory.page, 'still there?');
  await mallory.page.locator('[data-testid="message"][data-state="failed"]', { hasText: 'blocked' }).waitFor();
  await shot(nina.page, 'nina-friends');
  assert.deepEqual(await bodies(nina.page, 1), ['hi nina']);
  await mallory.context.close();
  await nina.context.close();
});
