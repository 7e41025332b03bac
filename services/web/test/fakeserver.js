// A scripted in-memory imkube server speaking protocol v1, with a fake
// WebSocket class bound to it. Outgoing frames can be dropped, duplicated and
// reordered (seeded, so runs are repeatable); tests can also inject messages,
// kick devices, ask for reconnects and cut connections.

/** @param {number} seed @returns {() => number} */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const conv1 = (a, b) => (a < b ? `u:${a}:${b}` : `u:${b}:${a}`);

export class FakeServer {
  /**
   * @param {object} [opts]
   * @param {number} [opts.seed]
   * @param {{drop?: number, dup?: number, reorder?: number, types?: string[]}} [opts.chaos]
   * @param {number} [opts.readDiffusionAbove] groups with more members use notify + pull
   */
  constructor(opts = {}) {
    this.random = prng(opts.seed ?? 1);
    this.chaos = { drop: 0, dup: 0, reorder: 0, types: ['msg', 'ack', 'sync_result', 'pull_result', 'notify'], ...opts.chaos };
    this.readDiffusionAbove = opts.readDiffusionAbove ?? 1000;
    this.tokens = new Map(); // token -> user
    this.inbox = new Map(); // user -> [{inboxSeq, msg}]
    this.convs = new Map(); // conv -> {seq, msgs: []}
    this.groups = new Map(); // group -> Set(users)
    this.acks = new Map(); // user|cmid -> ack
    this.conns = new Set();
    this.received = []; // every client frame: {user, device, frame}
    this.connects = 0;
    this.mid = 0;
    this.holdAcks = false;
    this.heldAcks = [];
    /** @type {(conn: any, frame: any) => boolean} return false to drop a delivery on purpose */
    this.filter = () => true;
    /** @type {(conn: any, frame: any) => any} return a frame to answer instead of the normal handling */
    this.intercept = () => undefined;
    const server = this;
    /** The WebSocket class to pass as opts.WebSocket. */
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.onopen = null;
        this.onmessage = null;
        this.onclose = null;
        this.onerror = null;
        this.conn = { ws: this, user: null, device: null, open: true, reorderHeld: null };
        server.connects++;
        setTimeout(() => {
          if (!this.conn.open) return;
          server.conns.add(this.conn);
          this.readyState = 1;
          this.onopen?.({});
        }, 0);
      }
      send(data) {
        if (this.readyState !== 1) throw new Error('not open');
        const conn = this.conn;
        setTimeout(() => conn.open && server._receive(conn, JSON.parse(data)), 0);
      }
      close() {
        server._close(this.conn);
      }
    };
  }

  /** @param {string} user @returns {string} a token for user */
  token(user) {
    const t = `tok-${user}`;
    this.tokens.set(t, user);
    return t;
  }

  /** @param {string} group @param {string[]} members */
  group(group, members) {
    this.groups.set(group, new Set(members));
  }

  /** Frames of type t the server received (optionally from user). */
  framesOf(t, user) {
    return this.received.filter((r) => r.frame.t === t && (!user || r.user === user)).map((r) => r.frame);
  }

  /** Commits a message as the real server would and pushes it; returns the ack. */
  post(from, to, body, cmid = `srv-${++this.mid}`, origin = null) {
    const key = `${from}|${cmid}`;
    if (this.acks.has(key)) return this.acks.get(key);
    let conv;
    let members;
    if (to.user) {
      conv = conv1(from, to.user);
      members = from === to.user ? [from] : [from, to.user];
    } else {
      conv = `g:${to.group}`;
      members = [...(this.groups.get(to.group) ?? [])];
    }
    const c = this.convs.get(conv) ?? { seq: 0, msgs: [] };
    this.convs.set(conv, c);
    c.seq++;
    const msg = { mid: `m${++this.mid}`, conv, seq: c.seq, from, kind: 'text', body, ts: 1700000000000 + this.mid, ...(origin?.extras ?? {}) };
    c.msgs.push(msg);
    const ack = { t: 'ack', cmid, mid: msg.mid, conv, seq: msg.seq, ts: msg.ts };
    this.acks.set(key, ack);
    if (members.length > this.readDiffusionAbove) {
      for (const conn of this.conns) {
        if (conn.user && members.includes(conn.user) && conn !== origin) this._push(conn, { t: 'notify', conv, seq: msg.seq });
      }
      return ack;
    }
    for (const u of members) {
      const box = this.inbox.get(u) ?? [];
      this.inbox.set(u, box);
      const inboxSeq = box.length + 1;
      box.push({ inboxSeq, msg });
      for (const conn of this.conns) {
        if (conn.user !== u || conn === origin) continue;
        this._push(conn, { t: 'msg', ...msg, inboxSeq });
      }
    }
    return ack;
  }

  /**
   * Recall, edit and delete as the real server applies them: recall and
   * edit become records of the conversation (every member's inbox, every
   * device including the requester's), delete a record in the user's inbox.
   */
  _lifecycle(conn, f) {
    const user = conn.user;
    if (f.t === 'delete') {
      const box = this.inbox.get(user) ?? [];
      this.inbox.set(user, box);
      const msg = { mid: `m${++this.mid}`, conv: f.conv, seq: 0, from: user, kind: 'delete', body: '', seqs: f.seqs, ts: 1700000000000 + this.mid };
      const inboxSeq = box.length + 1;
      box.push({ inboxSeq, msg });
      for (const o of this.conns) if (o.user === user) this._push(o, { t: 'msg', ...msg, inboxSeq });
      this._send(conn, { t: 'ok', id: f.id });
      return;
    }
    const c = this.convs.get(f.conv);
    const orig = c?.msgs.find((m) => m.seq === f.seq);
    if (!orig) return this._send(conn, { t: 'error', id: f.id, code: 'NOT_FOUND', message: 'no such message', retryable: false });
    if (orig.from !== user) return this._send(conn, { t: 'error', id: f.id, code: 'FORBIDDEN', message: 'not yours', retryable: false });
    if (f.t === 'recall') Object.assign(orig, { recalled: true, body: '' });
    else Object.assign(orig, { edited: true, body: f.body });
    c.seq++;
    const msg = { mid: `m${++this.mid}`, conv: f.conv, seq: c.seq, from: user, kind: f.t, body: f.t === 'edit' ? f.body : '', ref: f.seq, ts: 1700000000000 + this.mid };
    c.msgs.push(msg);
    const [kind, a, b] = f.conv.split(':');
    const members = kind === 'u' ? [a, b] : [...(this.groups.get(a) ?? [])];
    for (const u of members) {
      const box = this.inbox.get(u) ?? [];
      this.inbox.set(u, box);
      const inboxSeq = box.length + 1;
      box.push({ inboxSeq, msg });
      for (const o of this.conns) if (o.user === u) this._push(o, { t: 'msg', ...msg, inboxSeq });
    }
    this._send(conn, { t: 'ok', id: f.id });
  }

  /**
   * A social event in user's inbox, pushed to the user's devices (unless
   * push is false: the devices learn it by sync), as the message service
   * does with friend_request, friend_added, friend_removed.
   */
  event(user, kind, data, push = true) {
    const box = this.inbox.get(user) ?? [];
    this.inbox.set(user, box);
    const inboxSeq = box.length + 1;
    const ev = { t: 'event', kind, data, ts: 1700000000000 + ++this.mid };
    box.push({ inboxSeq, msg: ev });
    if (push) for (const o of this.conns) if (o.user === user) this._push(o, { ...ev, inboxSeq });
  }

  /** Cuts every connection (or those of user) as a network failure would. */
  cut(user) {
    for (const conn of [...this.conns]) if (!user || conn.user === user) this._close(conn, true);
  }

  kick(user) {
    for (const conn of [...this.conns]) {
      if (conn.user !== user) continue;
      this._send(conn, { t: 'kicked', reason: 'replaced' });
      setTimeout(() => this._close(conn, true), 1);
    }
  }

  /** Sends reauth to user's connections and closes them, as the gateway does before a token expires. */
  reauth(user) {
    for (const conn of [...this.conns]) {
      if (conn.user !== user) continue;
      this._send(conn, { t: 'reauth' });
      setTimeout(() => this._close(conn, true), 1);
    }
  }

  askReconnect(user, afterMs) {
    for (const conn of [...this.conns]) if (conn.user === user) this._send(conn, { t: 'reconnect', afterMs });
  }

  releaseAcks() {
    const held = this.heldAcks;
    this.heldAcks = [];
    for (const [conn, ack] of held) this._push(conn, ack);
  }

  // ---- internals ----

  _close(conn, notify = false) {
    if (!conn.open) return;
    conn.open = false;
    this.conns.delete(conn);
    conn.ws.readyState = 3;
    if (notify) setTimeout(() => conn.ws.onclose?.({ code: 1006 }), 0);
  }

  /** Sends with the chaos applied. */
  _push(conn, frame) {
    if (!this.filter(conn, frame)) return;
    const { drop, dup, reorder, types } = this.chaos;
    if (types.includes(frame.t)) {
      if (this.random() < drop) return;
      if (this.random() < reorder && !conn.reorderHeld) {
        conn.reorderHeld = frame;
        setTimeout(() => {
          if (conn.reorderHeld === frame) {
            conn.reorderHeld = null;
            this._send(conn, frame);
          }
        }, 5);
        return;
      }
      if (this.random() < dup) this._send(conn, frame);
    }
    this._send(conn, frame);
    if (conn.reorderHeld && conn.reorderHeld !== frame) {
      const held = conn.reorderHeld;
      conn.reorderHeld = null;
      this._send(conn, held);
    }
  }

  _send(conn, frame) {
    const data = JSON.stringify(frame);
    setTimeout(() => conn.open && conn.ws.onmessage?.({ data }), 0);
  }

  _receive(conn, f) {
    this.received.push({ user: conn.user, device: conn.device, frame: f });
    const answer = this.intercept(conn, f);
    if (answer !== undefined) {
      if (answer) this._send(conn, answer);
      return;
    }
    if (!conn.user) {
      const user = f.t === 'auth' ? this.tokens.get(f.token) : undefined;
      if (!user) {
        this._send(conn, { t: 'error', code: 'UNAUTHENTICATED', message: 'bad token', retryable: false });
        setTimeout(() => this._close(conn, true), 1);
        return;
      }
      for (const other of [...this.conns]) {
        if (other !== conn && other.user === user && other.device === f.device) {
          this._send(other, { t: 'kicked', reason: 'replaced' });
          setTimeout(() => this._close(other, true), 1);
        }
      }
      conn.user = user;
      conn.device = f.device;
      const convs = [];
      for (const [g, members] of this.groups) {
        const c = this.convs.get(`g:${g}`);
        if (members.has(user) && members.size > this.readDiffusionAbove && c) convs.push({ conv: `g:${g}`, lastSeq: c.seq });
      }
      this._send(conn, { t: 'auth_ok', user, device: f.device, inboxSeq: (this.inbox.get(user) ?? []).length, protocol: 1, convs });
      return;
    }
    if (this._signal(conn, f)) return;
    switch (f.t) {
      case 'send': {
        conn.extras = {};
        if (f.replyTo) conn.extras.replyTo = f.replyTo;
        if (f.mentions) conn.extras.mentions = f.mentions;
        const ack = this.post(conn.user, f.to, f.body, f.cmid, conn);
        conn.extras = null;
        if (this.holdAcks) this.heldAcks.push([conn, ack]);
        else this._push(conn, ack);
        break;
      }
      case 'sync': {
        const box = this.inbox.get(conn.user) ?? [];
        const rest = box.filter((e) => e.inboxSeq > f.after);
        const items = rest.slice(0, f.limit ?? 100).map((e) => ({ ...e.msg, inboxSeq: e.inboxSeq }));
        const more = rest.length > items.length;
        const inboxSeq = more ? items[items.length - 1].inboxSeq : box.length;
        this._push(conn, { t: 'sync_result', id: f.id, items, inboxSeq, more });
        break;
      }
      case 'pull': {
        const c = this.convs.get(f.conv) ?? { msgs: [] };
        const to = f.to ?? Infinity;
        const range = c.msgs.filter((m) => m.seq >= f.from && m.seq <= to);
        const items = range.slice(0, f.limit ?? 100);
        this._push(conn, { t: 'pull_result', id: f.id, conv: f.conv, items, more: range.length > items.length });
        break;
      }
      case 'read': {
        const [, a, b] = f.conv.split(':');
        const other = a === conn.user ? b : a;
        for (const o of this.conns) {
          if (o.user === other) this._send(o, { t: 'receipt', conv: f.conv, user: conn.user, kind: 'read', seq: f.seq });
        }
        break;
      }
      case 'ping':
        this._send(conn, { t: 'pong' });
        break;
      case 'recall':
      case 'edit':
      case 'delete':
        this._lifecycle(conn, f);
        break;
      default:
        this._send(conn, { t: 'error', code: 'BAD_FRAME', message: `unknown ${f.t}`, retryable: false });
    }
  }
}

// ---- signals: read records, delivered, typing, presence ----

/**
 * Handles the signal frames as the real server does; returns true when the
 * frame needs nothing else. A read also writes a read record into the
 * reader's inbox and pushes read_sync to the reader's other devices, then
 * falls through to the receipt.
 * @this {FakeServer}
 */
FakeServer.prototype._signal = function (conn, f) {
  this.watching ??= new Map(); // conn -> Set(users)
  switch (f.t) {
    case 'read': {
      this.readSeqs ??= new Map();
      const key = `${conn.user}|${f.conv}`;
      const last = this.convs.get(f.conv)?.seq ?? 0;
      const seq = Math.min(f.seq, last);
      if (seq <= (this.readSeqs.get(key) ?? 0)) return true;
      this.readSeqs.set(key, seq);
      const box = this.inbox.get(conn.user) ?? [];
      this.inbox.set(conn.user, box);
      const inboxSeq = box.length + 1;
      box.push({ inboxSeq, msg: { t: 'read_sync', conv: f.conv, seq } });
      for (const o of this.conns) {
        if (o.user === conn.user && o !== conn) this._push(o, { t: 'read_sync', conv: f.conv, seq, inboxSeq });
      }
      return !f.conv.startsWith('u:');
    }
    case 'delivered': {
      const [, a, b] = f.conv.split(':');
      const other = a === conn.user ? b : a;
      for (const o of this.conns) {
        if (o.user === other) this._send(o, { t: 'receipt', conv: f.conv, user: conn.user, kind: 'delivered', seq: f.seq });
      }
      return true;
    }
    case 'typing': {
      const members = f.conv.startsWith('u:') ? f.conv.split(':').slice(1) : [...(this.groups.get(f.conv.slice(2)) ?? [])];
      for (const o of this.conns) {
        if (o.user !== conn.user && members.includes(o.user)) this._send(o, { t: 'typing', conv: f.conv, user: conn.user });
      }
      return true;
    }
    case 'presence_sub': {
      const set = this.watching.get(conn) ?? new Set();
      this.watching.set(conn, set);
      for (const u of f.users) set.add(u);
      this._send(conn, { t: 'ok', id: f.id });
      for (const u of f.users) {
        const online = [...this.conns].some((o) => o.user === u);
        this._send(conn, { t: 'presence', user: u, online, lastSeen: online ? Date.now() : 0 });
      }
      return true;
    }
    case 'presence_unsub':
      for (const u of f.users ?? [...(this.watching.get(conn) ?? [])]) this.watching.get(conn)?.delete(u);
      this._send(conn, { t: 'ok', id: f.id });
      return true;
  }
  return false;
};

/** Pushes a presence change of user to the connections watching user. */
FakeServer.prototype.presenceChange = function (user, online, lastSeen) {
  for (const [conn, set] of this.watching ?? []) {
    if (conn.open && set.has(user)) this._send(conn, { t: 'presence', user, online, lastSeen });
  }
};

/** Resolves once cond() is true; rejects after timeoutMs (bounded wait). */
export async function waitFor(cond, timeoutMs = 5000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
