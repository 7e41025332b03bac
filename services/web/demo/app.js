// imkube demo chat: plain ES module on top of the SDK served at /sdk/.
import { ImkubeClient, RestClient, LocalStorageStorage, ApiError, directConv, newId, mediaOf } from '/sdk/imkube.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const SESSION_KEY = 'imkube.demo.session';
const DEVICE_KEY = 'imkube.demo.device';

const ui = {
  auth: $('auth'),
  app: $('app'),
  authForm: /** @type {HTMLFormElement} */ ($('auth-form')),
  username: /** @type {HTMLInputElement} */ ($('username')),
  password: /** @type {HTMLInputElement} */ ($('password')),
  displayName: /** @type {HTMLInputElement} */ ($('display-name')),
  authError: $('auth-error'),
  whoami: $('whoami'),
  conn: $('conn-state'),
  logout: $('logout'),
  convList: $('conv-list'),
  convEmpty: $('conv-empty'),
  sideError: $('side-error'),
  chatTitle: $('chat-title'),
  messages: $('messages'),
  composer: /** @type {HTMLFormElement} */ ($('composer')),
  input: /** @type {HTMLInputElement} */ ($('compose-input')),
  addMember: /** @type {HTMLFormElement} */ ($('add-member')),
  typing: $('typing'),
};

/** @type {{rest: RestClient, client: ImkubeClient|null, me: any, session: any, open: string|null}} */
const app = { rest: new RestClient(), client: null, me: null, session: null, open: null, replyTo: null };
/** conv -> {msgs: Map<seq, msg>, pending: Map<cmid, {cmid, body, to, state, error}>} */
const chats = new Map();
/** user id -> display name */
const names = new Map();
/** group id -> group */
const groups = new Map();

// One device per browser tab: two tabs of the same account are two devices
// (both get every message) instead of replacing each other.
function deviceId() {
  let d = sessionStorage.getItem(DEVICE_KEY);
  if (!d) {
    d = `web-${newId().slice(0, 12)}`;
    sessionStorage.setItem(DEVICE_KEY, d);
  }
  return d;
}

function chat(conv) {
  let c = chats.get(conv);
  if (!c) {
    c = { msgs: new Map(), pending: new Map() };
    chats.set(conv, c);
  }
  return c;
}

function wsURL() {
  const u = new URL('/ws', location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

function errText(err) {
  if (err instanceof ApiError) return `${err.message} (${err.code})`;
  if (err?.code === 'TOO_LARGE') return 'the message is too long';
  if (err?.code === 'TIMEOUT') return 'no answer from the server';
  return err instanceof Error ? err.message : String(err);
}

// ---- auth -----------------------------------------------------------------

async function login(register) {
  ui.authError.textContent = '';
  const username = ui.username.value.trim();
  const password = ui.password.value;
  if (!username || !password) {
    ui.authError.textContent = 'Enter a username and a password.';
    return;
  }
  try {
    if (register) {
      await app.rest.register({ username, password, displayName: ui.displayName.value.trim() || username });
    }
    const s = await app.rest.login({ username, password });
    const session = { token: s.token, userId: s.userId, username, expiresAt: s.expiresAt };
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    await start(session);
  } catch (err) {
    ui.authError.textContent =
      err instanceof ApiError && err.code === 'USERNAME_TAKEN'
        ? 'That username is taken. Log in instead, or pick another one.'
        : err instanceof ApiError && err.code === 'BAD_CREDENTIALS'
          ? 'Wrong username or password.'
          : errText(err);
  }
}

async function start(session) {
  app.session = session;
  app.rest = new RestClient({ token: session.token });
  app.me = await app.rest.me();
  names.set(app.me.id, app.me.displayName || app.me.username);
  ui.whoami.textContent = `${app.me.displayName || app.me.username} (@${app.me.username})`;
  ui.auth.hidden = true;
  ui.app.hidden = false;
  ui.logout.hidden = false;
  const client = new ImkubeClient({
    url: wsURL(),
    token: session.token,
    device: deviceId(),
    // Cursors and recent messages survive reloads of this tab.
    storage: new LocalStorageStorage(sessionStorage),
    rest: app.rest,
  });
  app.client = client;
  client.on('state', showState);
  client.on('message', onMessage);
  client.on('conversation', () => renderConvs());
  client.on('receipt', (r) => r.conv === app.open && renderMessages());
  watchLifecycle(client);
  watchSignals(client);
  client.on('kicked', onKicked);
  watchFriends(client);
  client.on('error', (e) => (ui.sideError.textContent = e.message));
  client.connect();
  // Show what is stored before the connection is up.
  client.on('synced', () => {
    for (const c of client.conversations()) for (const m of client.recent(c.conv)) addMessage(m);
    renderConvs();
    if (app.open) renderMessages();
    watchPresence();
  });
  loadGroups().catch(() => {});
  renderConvs();
}

async function loadGroups() {
  const list = await app.rest.groups();
  for (const g of list) groups.set(g.id, g);
  renderConvs();
}

async function logout() {
  app.client?.close();
  // End the session on the server too: the token stops working everywhere.
  await app.rest.logout().catch(() => {});
  localStorage.removeItem(SESSION_KEY);
  location.reload();
}

// ---- connection state ------------------------------------------------------

function showState(s) {
  const labels = {
    idle: 'not connected',
    connecting: 'connecting…',
    authenticating: 'connecting…',
    online: 'online',
    offline: s.retryInMs != null ? `offline, retrying in ${Math.ceil(s.retryInMs / 1000)} s` : 'offline',
    kicked: 'signed in elsewhere',
    unauthenticated: 'session expired: log in again',
    closed: 'closed',
  };
  ui.conn.textContent = labels[s.state] ?? s.state;
  ui.conn.dataset.state = s.state;
  if (s.state === 'unauthenticated') {
    // The token expired or the server has a new key: back to the login form.
    localStorage.removeItem(SESSION_KEY);
    ui.app.hidden = true;
    ui.auth.hidden = false;
    ui.logout.hidden = true;
    ui.authError.textContent = 'Your session ended. Log in again.';
  }
}

// ---- names -----------------------------------------------------------------

const lookups = new Map();
function nameOf(userId) {
  if (names.has(userId)) return names.get(userId);
  if (!lookups.has(userId)) {
    lookups.set(
      userId,
      app.rest
        .getUser(userId)
        .then((u) => {
          names.set(userId, u.displayName || u.username);
          renderConvs();
          renderFriends();
          if (app.open) renderMessages();
        })
        .catch(() => names.set(userId, userId)),
    );
  }
  return userId;
}

function title(conv) {
  if (conv.startsWith('g:')) {
    const g = groups.get(conv.slice(2));
    if (!g && !lookups.has(conv)) {
      lookups.set(
        conv,
        app.rest
          .getGroup(conv.slice(2))
          .then((gg) => {
            groups.set(gg.id, gg);
            renderConvs();
            if (app.open === conv) renderHead();
          })
          .catch(() => {}),
      );
    }
    return `# ${g?.name ?? conv.slice(2)}`;
  }
  const [, a, b] = conv.split(':');
  return nameOf(a === app.me.id ? b : a);
}

function target(conv) {
  if (conv.startsWith('g:')) return { group: conv.slice(2) };
  const [, a, b] = conv.split(':');
  return { user: a === app.me.id ? b : a };
}

// ---- messages --------------------------------------------------------------

function addMessage(m) {
  const c = chat(m.conv);
  c.msgs.set(m.seq, m);
  if (m.cmid) c.pending.delete(m.cmid);
}

function onMessage(m) {
  addMessage(m);
  if (m.conv === app.open) {
    renderMessages();
    if (document.visibilityState === 'visible') app.client?.markRead(m.conv, m.seq);
  }
}

function sendText(conv, body) {
  const c = chat(conv);
  const p = { cmid: newId(), body, to: target(conv), state: 'sending', error: '', replyTo: app.replyTo ?? undefined, mentions: mentionsIn(body) };
  setReply(null);
  c.pending.set(p.cmid, p);
  renderMessages();
  transmit(conv, p);
}

function transmit(conv, p) {
  p.state = 'sending';
  app.client
    .send({ to: p.to, body: p.body, cmid: p.cmid, replyTo: p.replyTo, mentions: p.mentions })
    .then((ack) => {
      // The acked message itself arrives through the 'message' event in order.
      if (chat(conv).pending.get(p.cmid) === p) p.state = 'sent';
      if (app.open === conv) renderMessages();
      return ack;
    })
    .catch((err) => {
      p.state = 'failed';
      p.error = errText(err);
      if (app.open === conv) renderMessages();
    });
}

async function openConv(conv) {
  app.open = conv;
  ui.composer.hidden = false;
  renderHead();
  const c = chat(conv);
  for (const m of app.client.recent(conv)) addMessage(m);
  renderMessages();
  renderConvs();
  app.client.markRead(conv);
  showTyping();
  watchPresence();
  refreshReads();
  ui.input.focus();
  // Fill in older history that this device has not seen.
  const seqs = [...c.msgs.keys()];
  const lowest = seqs.length ? Math.min(...seqs) : app.client.conversation(conv).lastSeq + 1;
  if (lowest > 1) {
    try {
      const from = Math.max(1, lowest - 50);
      const r = await app.client.history(conv, { fromSeq: from, toSeq: lowest - 1, limit: lowest - from });
      for (const m of r.items) if (!c.msgs.has(m.seq)) c.msgs.set(m.seq, { ...m, conv });
      if (app.open === conv) renderMessages();
    } catch {
      /* offline: the stored messages are shown */
    }
  }
}

// ---- rendering ---------------------------------------------------------------

function renderHead() {
  ui.chatTitle.textContent = app.open ? title(app.open) : 'Pick a conversation';
  const dot = app.open ? presenceDot(app.open) : null;
  if (dot) ui.chatTitle.prepend(dot);
  ui.addMember.hidden = !app.open?.startsWith('g:');
  renderBlock();
}

function renderConvs() {
  if (!app.client) return;
  const list = app.client.conversations();
  for (const conv of chats.keys()) {
    if (!list.some((c) => c.conv === conv)) list.push(app.client.conversation(conv));
  }
  ui.convEmpty.hidden = list.length > 0;
  ui.convList.replaceChildren(
    ...list.map((c) => {
      const li = document.createElement('li');
      li.className = `conv${c.conv === app.open ? ' active' : ''}`;
      li.dataset.conv = c.conv;
      li.setAttribute('data-testid', 'conv');
      const name = document.createElement('span');
      name.className = 'conv-name';
      name.textContent = title(c.conv);
      const dot = presenceDot(c.conv);
      if (dot) name.prepend(dot);
      const last = document.createElement('span');
      last.className = 'conv-last';
      last.setAttribute('data-testid', 'conv-preview');
      last.textContent = previewOf(c.last);
      li.append(name, last);
      convExtras(li, c);
      if (c.unread > 0 && c.conv !== app.open) {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.setAttribute('data-testid', 'unread');
        badge.textContent = String(c.unread);
        li.append(badge);
      }
      li.addEventListener('click', () => openConv(c.conv));
      return li;
    }),
  );
}

function renderMessages() {
  if (!app.open) {
    ui.messages.replaceChildren();
    return;
  }
  const c = chat(app.open);
  const conv = app.client.conversation(app.open);
  const items = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
  const atBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;
  const nodes = items.map((m) => {
    const own = m.from === app.me.id;
    const state = own ? tick(conv, m) : 'received';
    if (m.kind === 'group_event') return eventLine(m);
    const body = m.recalled ? '(message recalled)' : m.body;
    const li = bubble(body, own, state, m.conv.startsWith('g:') && !own ? nameOf(m.from) : '', m.seq);
    if (!m.recalled) showMedia(li, m);
    decorate(li, m, own, c);
    const n = own ? readCounts.get(`${m.conv}|${m.seq}`) : undefined;
    const st = li.querySelector('.state');
    if (n !== undefined && st) {
      st.textContent = `${n} read`;
      st.setAttribute('data-testid', 'read-count');
    }
    return li;
  });
  for (const p of c.pending.values()) {
    const li = bubble(p.body, true, p.state, '', 0);
    if (p.state === 'failed') {
      const st = li.querySelector('.state');
      if (st && p.error) st.textContent = `failed: ${p.error}`;
      const retry = document.createElement('button');
      retry.className = 'link retry';
      retry.setAttribute('data-testid', 'retry');
      retry.textContent = 'Retry';
      retry.title = p.error;
      retry.addEventListener('click', () => {
        transmit(app.open, p);
        renderMessages();
      });
      li.append(retry);
    }
    nodes.push(li);
  }
  ui.messages.replaceChildren(...nodes);
  if (atBottom || c.pending.size) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function bubble(body, own, state, sender, seq) {
  const li = document.createElement('li');
  li.className = `msg ${own ? 'own' : 'theirs'} ${state}`;
  li.setAttribute('data-testid', 'message');
  li.dataset.state = state;
  if (seq) li.dataset.seq = String(seq);
  if (sender) {
    const s = document.createElement('span');
    s.className = 'sender';
    s.textContent = sender;
    li.append(s);
  }
  const b = document.createElement('span');
  b.className = 'body';
  b.setAttribute('data-testid', 'message-body');
  b.textContent = body;
  li.append(b);
  if (own) {
    const st = document.createElement('span');
    st.className = 'state';
    st.setAttribute('data-testid', 'message-state');
    st.textContent = { sending: 'sending…', sent: 'sent ✓', delivered: 'delivered ✓✓', read: 'read ✓✓', failed: 'failed' }[state] ?? state;
    li.append(st);
  }
  return li;
}

// ---- media -------------------------------------------------------------------

/** object key -> presigned URL (valid for minutes; refetched on a failed load) */
const mediaURLs = new Map();

function mediaURL(key, thumb) {
  const k = key + (thumb ? '?thumb' : '');
  if (!mediaURLs.has(k)) {
    const p = app.rest.mediaUrl(key, { thumb });
    p.catch(() => mediaURLs.delete(k));
    mediaURLs.set(k, p);
  }
  return mediaURLs.get(k);
}

// Images show their thumbnail inline (the full image when there is none
// yet) and open in full on click; other files are download links.
function showMedia(li, m) {
  const media = mediaOf(m);
  if (!media) return;
  const b = li.querySelector('.body');
  const a = document.createElement('a');
  a.className = 'media';
  a.target = '_blank';
  a.rel = 'noopener';
  a.setAttribute('data-testid', 'media-link');
  a.textContent = `${media.name} (${Math.ceil(media.size / 1024)} KiB)`;
  mediaURL(media.objectKey, false).then((u) => (a.href = u), () => (a.textContent += ' — unavailable'));
  if (m.kind === 'image') {
    const img = document.createElement('img');
    img.className = 'thumb';
    img.alt = media.name;
    img.setAttribute('data-testid', 'media-image');
    if (media.width && media.height) img.style.aspectRatio = `${media.width} / ${media.height}`;
    const full = () => mediaURL(media.objectKey, false).then((u) => (img.src = u));
    (media.thumbKey ? mediaURL(media.objectKey, true) : Promise.reject(new Error('no thumbnail')))
      .then((u) => (img.src = u))
      .catch(full);
    img.addEventListener('error', () => {
      // The thumbnail may not be ready yet: show the image itself.
      mediaURLs.delete(media.objectKey + '?thumb');
      if (!img.dataset.full) {
        img.dataset.full = '1';
        full();
      }
    });
    a.textContent = '';
    a.append(img);
  }
  b.replaceChildren(a);
}

async function attach(file) {
  if (!file || !app.open) return;
  const conv = app.open;
  const bar = /** @type {HTMLProgressElement} */ ($('upload-progress'));
  bar.hidden = false;
  bar.value = 0;
  try {
    await app.client.uploadAndSend(file, {
      to: target(conv),
      onProgress: (p) => (bar.value = p.total ? p.loaded / p.total : 0),
    });
  } catch (err) {
    ui.sideError.textContent = `Sending ${file.name} failed: ${errText(err)}`;
  } finally {
    bar.hidden = true;
  }
}

$('attach').addEventListener('change', (e) => {
  const input = /** @type {HTMLInputElement} */ (e.target);
  const file = input.files?.[0];
  input.value = '';
  attach(file);
});

// ---- forms -------------------------------------------------------------------

ui.authForm.addEventListener('submit', (e) => {
  e.preventDefault();
  login(false);
});
$('register').addEventListener('click', () => login(true));
ui.logout.addEventListener('click', logout);

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const body = ui.input.value;
  if (!body.trim() || !app.open) return;
  ui.input.value = '';
  sendText(app.open, body);
});

$('new-chat').addEventListener('submit', async (e) => {
  e.preventDefault();
  ui.sideError.textContent = '';
  const input = /** @type {HTMLInputElement} */ ($('new-chat-username'));
  const username = input.value.trim();
  try {
    const u = await app.rest.findUser(username);
    names.set(u.id, u.displayName || u.username);
    input.value = '';
    await openConv(directConv(app.me.id, u.id));
  } catch (err) {
    ui.sideError.textContent = err instanceof ApiError && err.status === 404 ? `No user named "${username}".` : errText(err);
  }
});

async function idsOf(usernames) {
  const ids = [];
  for (const n of usernames) {
    try {
      ids.push((await app.rest.findUser(n)).id);
    } catch (err) {
      throw new Error(err instanceof ApiError && err.status === 404 ? `No user named "${n}".` : errText(err));
    }
  }
  return ids;
}

$('new-group').addEventListener('submit', async (e) => {
  e.preventDefault();
  ui.sideError.textContent = '';
  const name = /** @type {HTMLInputElement} */ ($('group-name'));
  const members = /** @type {HTMLInputElement} */ ($('group-members'));
  try {
    const ids = await idsOf(members.value.split(/[\s,]+/).filter(Boolean));
    const g = await app.rest.createGroup({ name: name.value.trim(), members: ids });
    groups.set(g.id, g);
    name.value = '';
    members.value = '';
    await openConv(`g:${g.id}`);
  } catch (err) {
    ui.sideError.textContent = errText(err);
  }
});

ui.addMember.addEventListener('submit', async (e) => {
  e.preventDefault();
  ui.sideError.textContent = '';
  const input = /** @type {HTMLInputElement} */ ($('add-member-username'));
  if (!app.open?.startsWith('g:')) return;
  try {
    const ids = await idsOf([input.value.trim()]);
    await app.rest.addMembers(app.open.slice(2), ids);
    input.value = '';
    ui.sideError.textContent = 'Member added.';
  } catch (err) {
    ui.sideError.textContent = errText(err);
  }
});

ui.input.addEventListener('input', () => {
  if (app.open && ui.input.value) app.client?.typing(app.open);
});

// ---- signals: ticks, "n read", typing, online dots -----------------------------

/** conv|seq -> how many members read an own group message */
const readCounts = new Map();
/** conv -> {user, until} of the last typing heard */
const typers = new Map();
const TYPING_SHOWN_MS = 3000;

/** The tick of an own message: read, delivered (1:1) or sent. */
function tick(conv, m) {
  if (conv.peerReadSeq >= m.seq) return 'read';
  if (m.conv.startsWith('u:') && conv.peerDeliveredSeq >= m.seq) return 'delivered';
  return 'sent';
}

function watchSignals(client) {
  client.on('typing', (t) => {
    typers.set(t.conv, { user: t.user, until: Date.now() + TYPING_SHOWN_MS });
    if (t.conv === app.open) showTyping();
    setTimeout(() => t.conv === app.open && showTyping(), TYPING_SHOWN_MS + 50);
  });
  client.on('message', (m) => {
    // A message ends its sender's typing.
    if (typers.get(m.conv)?.user === m.from) typers.delete(m.conv);
    if (m.conv === app.open) showTyping();
    if (m.conv === app.open && m.conv.startsWith('g:')) refreshReads();
    if (m.conv.startsWith('u:')) watchPresence();
  });
  client.on('presence', () => {
    renderConvs();
    renderHead();
  });
  client.on('readSync', (r) => r.conv === app.open && renderMessages());
  // "n read" of the open group's own messages, kept fresh while it is open.
  setInterval(refreshReads, 3000);
}

function showTyping() {
  const t = app.open ? typers.get(app.open) : undefined;
  ui.typing.textContent = t && t.until > Date.now() ? `${nameOf(t.user)} is typing…` : '';
}

/** peers whose presence was asked for (once per page) */
const watched = new Set();

/** Watches the online state of the other party of every one-to-one chat. */
function watchPresence() {
  const client = app.client;
  if (!client || client.state !== 'online') return;
  const peers = new Set();
  for (const c of [...client.conversations(), ...(app.open ? [client.conversation(app.open)] : [])]) {
    if (!c.conv.startsWith('u:') || !(c.lastSeq > 0)) continue;
    const [, a, b] = c.conv.split(':');
    const peer = a === app.me.id ? b : a;
    if (peer !== app.me.id && !watched.has(peer)) peers.add(peer);
  }
  if (peers.size === 0) return;
  for (const p of peers) watched.add(p);
  client.subscribePresence([...peers]).catch(() => {
    for (const p of peers) watched.delete(p); // try again on the next occasion
  });
}

/** A dot for a one-to-one chat whose peer's presence is known. */
function presenceDot(conv) {
  if (!conv.startsWith('u:')) return null;
  const [, a, b] = conv.split(':');
  const p = app.client?.presence(a === app.me.id ? b : a);
  if (!p) return null;
  const dot = document.createElement('span');
  dot.className = `dot ${p.online ? 'online' : 'offline'}`;
  dot.setAttribute('data-testid', 'presence');
  dot.dataset.online = String(p.online);
  dot.title = p.online ? 'online' : p.lastSeen ? `last seen ${new Date(p.lastSeen).toLocaleString()}` : 'offline';
  return dot;
}

/** Asks the server how many have read this user's last messages in the open group. */
async function refreshReads() {
  const conv = app.open;
  if (!conv?.startsWith('g:') || !app.client || document.visibilityState === 'hidden') return;
  const own = [...chat(conv).msgs.values()].filter((m) => m.from === app.me.id).sort((x, y) => y.seq - x.seq).slice(0, 5);
  let changed = false;
  for (const m of own) {
    try {
      const r = await app.client.reads(conv, m.seq);
      const key = `${conv}|${m.seq}`;
      if (readCounts.get(key) !== r.readCount) {
        readCounts.set(key, r.readCount);
        changed = true;
      }
    } catch {
      return; // offline or no longer a member: keep what is shown
    }
  }
  if (changed && app.open === conv) renderMessages();
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && app.open) app.client?.markRead(app.open);
});

// ---- boot --------------------------------------------------------------------

const saved = (() => {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null');
  } catch {
    return null;
  }
})();
if (saved?.token) {
  start(saved).catch(() => {
    localStorage.removeItem(SESSION_KEY);
    ui.auth.hidden = false;
    ui.app.hidden = true;
  });
}

// ---- message lifecycle: recall, edit, delete, replies, mentions, pins ----------

/** Keeps the open chat in step with the SDK's lifecycle events. */
function watchLifecycle(client) {
  client.on('recall', (e) => {
    const m = chat(e.conv).msgs.get(e.seq);
    if (m) Object.assign(m, { recalled: true, body: '' });
    if (e.conv === app.open) renderMessages();
  });
  client.on('edit', (e) => {
    const m = chat(e.conv).msgs.get(e.seq);
    if (m && !m.recalled) Object.assign(m, { body: e.body, edited: true });
    if (e.conv === app.open) renderMessages();
  });
  client.on('delete', (e) => {
    for (const n of e.seqs) chat(e.conv).msgs.delete(n);
    if (e.conv === app.open) renderMessages();
    renderConvs();
  });
  client.on('groupEvent', (e) => {
    if (e.event === 'group_updated' || e.event === 'dismissed') loadGroups().catch(() => {});
  });
}

/** @returns {string} the conversation list's line for the last message */
function previewOf(m) {
  if (!m) return '';
  if (m.recalled) return '(message recalled)';
  if (m.kind === 'group_event') return eventText(m);
  const media = mediaOf(m);
  return media ? `[${m.kind}] ${media.name}` : m.body.slice(0, 120);
}

/** Pin toggle and mention badge of a conversation list entry. */
function convExtras(li, c) {
  if (c.pinned) li.classList.add('pinned');
  const pin = document.createElement('button');
  pin.className = 'link pin';
  pin.setAttribute('data-testid', 'pin');
  pin.title = c.pinned ? 'Unpin' : 'Pin to the top';
  pin.textContent = c.pinned ? '📌' : '📍';
  pin.addEventListener('click', (e) => {
    e.stopPropagation();
    app.client.pin(c.conv, !c.pinned).then(renderConvs, (err) => (ui.sideError.textContent = errText(err)));
  });
  li.append(pin);
  if (c.mentions > 0 && c.conv !== app.open) {
    const at = document.createElement('span');
    at.className = 'badge mention';
    at.setAttribute('data-testid', 'mention-badge');
    at.textContent = '@';
    li.append(at);
  }
}

/** Reply quote, "edited", mention highlight and the actions of a message bubble. */
function decorate(li, m, own, c) {
  if (m.replyTo) {
    const q = document.createElement('span');
    q.className = 'quote';
    q.setAttribute('data-testid', 'reply-quote');
    const orig = c.msgs.get(m.replyTo);
    q.textContent = `↪ ${orig ? (orig.recalled ? '(message recalled)' : orig.body.slice(0, 60)) : `#${m.replyTo}`}`;
    li.prepend(q);
  }
  if (m.edited && !m.recalled) {
    const e = document.createElement('span');
    e.className = 'edited';
    e.setAttribute('data-testid', 'edited');
    e.textContent = 'edited';
    li.append(e);
  }
  if (m.mentions && (m.mentions.includes(app.me.id) || m.mentions.includes('all'))) li.classList.add('mentioned');
  if (m.recalled) return;
  const actions = document.createElement('span');
  actions.className = 'actions';
  const act = (label, testid, fn) => {
    const b = document.createElement('button');
    b.className = 'link';
    b.textContent = label;
    b.setAttribute('data-testid', testid);
    b.addEventListener('click', () => fn().catch((err) => (ui.sideError.textContent = errText(err))));
    actions.append(b);
  };
  act('Reply', 'reply', async () => setReply(m));
  if (own) {
    act('Edit', 'edit', async () => {
      const body = prompt('Edit message', m.body);
      if (body != null && body !== m.body) await app.client.edit(m.conv, m.seq, body);
    });
    act('Recall', 'recall', () => app.client.recall(m.conv, m.seq));
  }
  act('Delete', 'delete', () => app.client.deleteForMe(m.conv, [m.seq]));
  li.append(actions);
}

/** A group_event message as a centred line. */
function eventLine(m) {
  const li = document.createElement('li');
  li.className = 'event';
  li.setAttribute('data-testid', 'group-event');
  li.dataset.seq = String(m.seq);
  li.textContent = eventText(m);
  return li;
}

function eventText(m) {
  let e = {};
  try {
    e = JSON.parse(m.body);
  } catch {
    return 'the group changed';
  }
  const who = nameOf(e.actor);
  const them = (e.targets ?? []).map(nameOf).join(', ');
  switch (e.event) {
    case 'member_added':
      return `${who} added ${them}`;
    case 'member_removed':
      return `${who} removed ${them}`;
    case 'member_left':
      return `${them} left`;
    case 'role_changed':
      return `${who} made ${them} ${e.role}`;
    case 'member_muted':
      return e.mutedUntil > Date.now() ? `${who} muted ${them}` : `${who} unmuted ${them}`;
    case 'group_updated':
      if (e.name) return `${who} renamed the group to "${e.name}"`;
      if (e.muteAll === true) return `${who} muted the group: only the owner and admins may send`;
      if (e.muteAll === false) return `${who} unmuted the group`;
      return `${who} changed the group settings`;
    case 'owner_transferred':
      return `${who} made ${them} the owner`;
    case 'dismissed':
      return `${who} dismissed the group`;
    case 'join_requested':
      return `${who} asked to join`;
    case 'join_request_accepted':
      return `${who} let ${them} in`;
    case 'join_request_declined':
      return `${who} declined ${them}'s request to join`;
    case 'member_joined':
      return `${them} joined`;
  }
  return `${who}: ${e.event}`;
}

/** @returns {string[]|undefined} "@all" or @username mentions of known users */
function mentionsIn(body) {
  if (/(^|\s)@all\b/.test(body)) return ['all'];
  const byName = new Map([...names].map(([id, n]) => [String(n).toLowerCase(), id]));
  const ids = [];
  for (const [, n] of body.matchAll(/(?:^|\s)@([\w.-]+)/g)) {
    const id = byName.get(n.toLowerCase());
    if (id && !ids.includes(id)) ids.push(id);
  }
  return ids.length ? ids.slice(0, 50) : undefined;
}

/** Sets (or clears) the message the next send replies to. */
function setReply(m) {
  app.replyTo = m ? m.seq : null;
  let bar = document.getElementById('reply-bar');
  if (!m) {
    bar?.remove();
    return;
  }
  if (!bar) {
    bar = document.createElement('div');
    bar.id = 'reply-bar';
    bar.className = 'reply-bar';
    bar.setAttribute('data-testid', 'reply-bar');
    ui.composer.before(bar);
  }
  bar.textContent = `Replying to: ${m.body.slice(0, 60)} `;
  const cancel = document.createElement('button');
  cancel.className = 'link';
  cancel.textContent = '✕';
  cancel.addEventListener('click', () => setReply(null));
  bar.append(cancel);
  ui.input.focus();
}

// ---- friends and blocks --------------------------------------------------------

const KICKED_TEXT = {
  replaced: 'This device signed in somewhere else; reload to reconnect.',
  logged_out: 'You logged out of this session.',
  password_changed: 'Your password was changed on another device: log in again.',
  session_revoked: 'This session was signed out from another device: log in again.',
  account_deleted: 'This account was deleted.',
};

function onKicked(k) {
  ui.sideError.textContent = KICKED_TEXT[k.reason] ?? `Signed out (${k.reason}).`;
  if (k.reason !== 'replaced') {
    localStorage.removeItem(SESSION_KEY);
    ui.app.hidden = true;
    ui.auth.hidden = false;
    ui.logout.hidden = true;
    ui.authError.textContent = ui.sideError.textContent;
  }
}

const social = { friends: [], requests: [], blocked: new Set() };

async function loadFriends() {
  const [friends, requests, blocks] = await Promise.all([
    app.rest.friends(),
    app.rest.friendRequests({ direction: 'in', status: 'pending' }),
    app.rest.blocks(),
  ]);
  social.friends = friends;
  social.requests = requests;
  social.blocked = new Set(blocks.map((b) => b.userId));
  for (const f of friends) names.set(f.userId, f.remark || f.displayName || f.username);
  renderFriends();
  renderBlock();
}

function watchFriends(client) {
  // Every friend change is an inbox event (also when it came by sync).
  client.on('event', () => loadFriends().catch((err) => (ui.sideError.textContent = errText(err))));
  loadFriends().catch(() => {});
}

function renderFriends() {
  const reqs = $('friend-requests');
  reqs.replaceChildren();
  for (const r of social.requests) {
    const li = document.createElement('li');
    li.className = 'request';
    li.dataset.testid = 'friend-request';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = `${nameOf(r.from)} wants to be friends${r.message ? `: “${r.message}”` : ''}`;
    li.append(who);
    for (const [label, fn, id] of [
      ['Accept', () => app.rest.acceptFriendRequest(r.id), 'friend-accept'],
      ['Decline', () => app.rest.declineFriendRequest(r.id), 'friend-decline'],
    ]) {
      const b = document.createElement('button');
      b.className = 'link';
      b.textContent = label;
      b.dataset.testid = id;
      b.addEventListener('click', () => fn().then(loadFriends).catch((err) => (ui.sideError.textContent = errText(err))));
      li.append(b);
    }
    reqs.append(li);
  }
  const badge = $('friend-badge');
  badge.textContent = String(social.requests.length);
  badge.hidden = social.requests.length === 0;
  if (social.requests.length > 0) /** @type {HTMLDetailsElement} */ ($('friends-box')).open = true;

  const list = $('friends');
  list.replaceChildren();
  for (const f of social.friends) {
    const li = document.createElement('li');
    li.dataset.testid = 'friend';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = f.remark || f.displayName || f.username;
    who.title = `@${f.username}`;
    who.addEventListener('click', () => openConv(directConv(app.me.id, f.userId)));
    const rm = document.createElement('button');
    rm.className = 'link';
    rm.textContent = 'Remove';
    rm.dataset.testid = 'friend-remove';
    rm.addEventListener('click', () => app.rest.removeFriend(f.userId).then(loadFriends).catch((err) => (ui.sideError.textContent = errText(err))));
    li.append(who, rm);
    list.append(li);
  }
}

/** The other user of the open one-to-one chat, or null. */
function peer() {
  if (!app.open?.startsWith('u:') || !app.me) return null;
  const [, a, b] = app.open.split(':');
  return a === app.me.id ? b : a;
}

function renderBlock() {
  const b = $('block');
  const p = peer();
  b.hidden = !p || p === app.me?.id;
  if (p) b.textContent = social.blocked.has(p) ? 'Unblock' : 'Block';
}

$('block').addEventListener('click', async () => {
  const p = peer();
  if (!p) return;
  try {
    if (social.blocked.has(p)) await app.rest.unblock(p);
    else await app.rest.block(p);
    await loadFriends();
  } catch (err) {
    ui.sideError.textContent = errText(err);
  }
});

$('add-friend').addEventListener('submit', async (e) => {
  e.preventDefault();
  ui.sideError.textContent = '';
  const input = /** @type {HTMLInputElement} */ ($('friend-username'));
  const username = input.value.trim();
  try {
    const u = await app.rest.findUser(username);
    await app.rest.sendFriendRequest(u.id);
    input.value = '';
    ui.sideError.textContent = `Friend request sent to ${u.displayName || u.username}.`;
  } catch (err) {
    const texts = {
      NOT_FOUND: `No user named "${username}".`,
      ALREADY_FRIENDS: 'You are friends already.',
      REQUEST_PENDING: 'A request between you is waiting for an answer.',
      BLOCKED: 'You cannot add this user.',
    };
    ui.sideError.textContent = (err instanceof ApiError && texts[err.code]) || errText(err);
  }
});
