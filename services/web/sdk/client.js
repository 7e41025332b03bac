// @ts-check
import { Emitter } from './emitter.js';
import { backoffDelay } from './backoff.js';
import { MemoryStorage } from './storage.js';
import { uploadAndSend } from './media.js';

/**
 * A message as delivered by the server (msg frames, sync and pull items). Own
 * messages confirmed by an ack carry the cmid of the send.
 * @typedef {object} Message
 * @property {string} mid
 * @property {string} conv "u:<a>:<b>" or "g:<groupId>"
 * @property {number} seq position in the conversation, from 1
 * @property {number} [inboxSeq] position in the user's inbox (write diffusion only)
 * @property {string} from sender's user id
 * @property {string} kind e.g. "text"
 * @property {string} body
 * @property {number} ts unix milliseconds
 * @property {boolean} [recalled] recalled: body erased
 * @property {boolean} [edited] body is the latest edit
 * @property {number} [ref] the seq a "recall" or "edit" record applies to
 * @property {number} [replyTo] the seq this message replies to
 * @property {string[]} [mentions] mentioned user ids, or ["all"]
 * @property {boolean} [muted] pushed while this user muted the conversation: do not alert
 * @property {string} [cmid] set on the sender's own device
 */

/**
 * @typedef {object} Ack
 * @property {string} cmid
 * @property {string} mid
 * @property {string} conv
 * @property {number} seq
 * @property {number} ts
 */

/**
 * @typedef {object} Conversation
 * @property {string} conv
 * @property {number} lastSeq highest seq seen
 * @property {number} readSeq this user's read cursor
 * @property {number} unread messages from others after readSeq
 * @property {number} peerReadSeq highest read receipt from another member
 * @property {number} peerDeliveredSeq highest delivered receipt from the other party (1:1)
 * @property {boolean} readDiffusion a large group whose messages are pulled
 * @property {Message|null} last the newest message
 * @property {number} lastTs time of the newest message (unix ms), 0 when unknown
 * @property {number} mentions messages after readSeq that mention this user
 * @property {boolean} pinned
 * @property {boolean} muted
 */

/**
 * @typedef {'idle'|'connecting'|'authenticating'|'online'|'offline'|'kicked'|'unauthenticated'|'closed'} State
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} url WebSocket URL, e.g. "ws://127.0.0.1:8080/ws"
 * @property {string | (() => string | Promise<string>)} token JWT, or a function called before each connect
 * @property {string} device device id (stable per browser/app install)
 * @property {any} [WebSocket] constructor; defaults to globalThis.WebSocket
 * @property {import('./storage.js').Storage} [storage] persistence hook (default: in memory)
 * @property {import('./rest.js').RestClient} [rest] used for the server's conversation list (unread counts) and, without `refresh`, to refresh the token on reauth
 * @property {() => Promise<string>} [refresh] called when the server sends reauth (the token is about to expire): returns the next token; default rest.refresh()
 * @property {number} [maxInFlight=16] sends awaiting an ack at once
 * @property {number} [ackTimeoutMs=5000] resend the same cmid when no ack came within this
 * @property {number} [sendDeadlineMs=30000] reject send() when not acked by then
 * @property {{baseMs?: number, maxMs?: number}} [backoff] reconnect backoff (full jitter), default 500 ms .. 30 s
 * @property {number} [pingIntervalMs=25000] ping period; no frame for twice this reconnects
 * @property {number} [requestTimeoutMs=10000] sync/pull answer deadline; on expiry the connection is renewed
 * @property {number} [gapWaitMs=200] how long a conversation gap may close by itself before it is pulled
 * @property {number} [syncIntervalMs=60000] periodic sync as a safety net (0 = off)
 * @property {number} [pageLimit=100] items per sync/pull page
 * @property {number} [recentLimit=50] messages kept per conversation for recent()
 * @property {number} [initialPull=50] messages pulled from a read-diffusion group seen for the first time
 * @property {boolean} [autoDelivered=true] confirm one-to-one messages from others with a delivered frame
 * @property {number} [typingIntervalMs=2000] typing() sends at most one frame per conversation per interval
 * @property {() => number} [random] for the backoff jitter (tests)
 * @property {(level: string, msg: string, data?: any) => void} [log]
 */

/** An error of the SDK or the server (code is a protocol error code or TIMEOUT/KICKED/CLOSED/DISCONNECTED). */
export class ImkubeError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{retryable?: boolean, cmid?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'ImkubeError';
    this.code = code;
    this.retryable = extra.retryable ?? false;
    this.cmid = extra.cmid;
  }
}

/** @returns {string} a random id for cmids */
export function newId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

/** @param {string} a @param {string} b @returns {string} the 1:1 conversation id of a and b */
export function directConv(a, b) {
  return a < b ? `u:${a}:${b}` : `u:${b}:${a}`;
}

/** @param {string} group @returns {string} */
export function groupConv(group) {
  return `g:${group}`;
}

/**
 * The optional send fields of the message lifecycle.
 * @param {{replyTo?: number, mentions?: string[]}} p
 * @returns {{replyTo?: number, mentions?: string[]}}
 */
function sendExtras(p) {
  /** @type {{replyTo?: number, mentions?: string[]}} */
  const out = {};
  if (p.replyTo != null) out.replyTo = p.replyTo;
  if (p.mentions && p.mentions.length > 0) out.mentions = p.mentions;
  return out;
}

const MAX_SEEN = 20000;
const MAX_LOOP = 10000;

/**
 * Per-conversation delivery state.
 * @typedef {object} ConvState
 * @property {string} conv
 * @property {number|null} seq highest seq handed to the app (null: not known yet)
 * @property {Map<number, Message>} buf messages waiting for a gap to close
 * @property {number} lastSeq
 * @property {number} readSeq
 * @property {number} unread
 * @property {number} peerReadSeq
 * @property {number} peerDeliveredSeq
 * @property {number} deliveredSent highest seq confirmed with delivered
 * @property {boolean} readDiffusion
 * @property {Message|null} last
 * @property {number} pulling connection generation of a running pull loop, 0 = none
 * @property {number} pullTarget
 * @property {any} gapTimer
 * @property {number} gapDefers
 * @property {number} pendingRead read cursor not yet sent to the server
 * @property {number} serverReadSeq read cursor the server has (sent or listed)
 * @property {number} lastTs time of the newest message (unix ms)
 * @property {number} mentions
 * @property {boolean} pinned
 * @property {boolean} muted
 */

/**
 * imkube's client: one WebSocket connection with authentication, reconnects,
 * acknowledged sends, sync, gap filling, ordering and dedup.
 *
 * Events (client.on(name, fn)): "message" (Message, each once, in seq order per
 * conversation), "state" ({state, retryInMs?}), "conversation" (Conversation),
 * "receipt" ({conv, user, kind: 'read'|'delivered', seq}), "readSync" ({conv, seq}: this
 * user read conv on another device), "typing" ({conv, user}), "presence" ({user,
 * online, lastSeen}), "recall" ({conv, seq, by, record}),
 * "edit" ({conv, seq, body, by, record}), "delete" ({conv, seqs}), "groupEvent"
 * ({conv, seq, event, actor, targets, ...}), "synced" ({inboxSeq}),
 * "event" ({kind, data, ts}: a social event) with "friendRequest" (the request
 * {id, from, to, message, status, createdAt}), "friendAdded" ({userId, requestId,
 * since}) and "friendRemoved" ({userId}),
 * "kicked" ({reason}: replaced, logged_out, password_changed, session_revoked,
 * account_deleted, banned, logout), "broadcast" ({id, from, kind, body, ts}: an
 * operator's announcement, not stored), "error" (ImkubeError; BANNED ends the client
 * like UNAUTHENTICATED). Recall and edit records are not
 * "message" events: they change the message they refer to in recent() (a
 * recalled placeholder, the edited body); group events are both.
 */
export class ImkubeClient extends Emitter {
  /** @param {ClientOptions} opts */
  constructor(opts) {
    super();
    if (!opts || !opts.url || !opts.token || !opts.device) throw new TypeError('ImkubeClient: url, token and device are required');
    this.opts = {
      maxInFlight: 16,
      ackTimeoutMs: 5000,
      sendDeadlineMs: 30000,
      pingIntervalMs: 25000,
      requestTimeoutMs: 10000,
      gapWaitMs: 200,
      syncIntervalMs: 60000,
      pageLimit: 100,
      recentLimit: 50,
      initialPull: 50,
      autoDelivered: true,
      typingIntervalMs: 2000,
      ...opts,
    };
    this.WS = opts.WebSocket ?? globalThis.WebSocket;
    if (!this.WS) throw new TypeError('ImkubeClient: no WebSocket: pass opts.WebSocket (e.g. from the "ws" package)');
    this.storage = opts.storage ?? new MemoryStorage();
    this.random = opts.random ?? Math.random;
    /** @type {State} */
    this.state = 'idle';
    /** @type {string|null} the authenticated user id */
    this.user = null;
    /** @type {any} */
    this._ws = null;
    this._gen = 0;
    this._attempt = 0;
    this._authed = false;
    /** @type {number|null} */
    this._reconnectAfterMs = null;
    /** @type {Record<'reconnect'|'ping'|'sync'|'persist'|'auth', any>} */
    this._timers = { reconnect: null, ping: null, sync: null, persist: null, auth: null };
    this._lastRx = 0;
    /** @type {any[]|null} frames received while the stored state loads */
    this._held = null;
    /** @type {Map<string, any>} */
    this._pending = new Map();
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._reqs = new Map();
    this._reqSeq = 0;
    this._inboxSeq = 0;
    /** @type {Map<number, Message>} */
    this._inboxBuf = new Map();
    this._syncing = 0;
    /** @type {Promise<void> | null} */
    this._syncDone = null;
    this._resync = false;
    /** @type {Map<string, ConvState>} */
    this._convs = new Map();
    /** @type {Set<string>} */
    this._seen = new Set();
    /** @type {Map<string, Message[]>} */
    this._recent = new Map();
    /** @type {string|null} */
    this._loadedKey = null;
    /** @type {Set<string>|null} "conv|seq" deleted for me (bounded) */
    this._hidden = null;
    /** @type {string|null} the token got by the last refresh (replaces opts.token) */
    this._token = null;
    // Signals: receipts, read sync, typing, presence.
    /** @type {Map<string, number>} conv -> time of the last typing frame */
    this._typingSent = new Map();
    /** @type {Set<string>} users watched (resubscribed after each reconnect) */
    this._presenceSubs = new Set();
    /** @type {Map<string, {user: string, online: boolean, lastSeen: number}>} */
    this._presence = new Map();
    /** @type {Set<string>} convs with a delivered frame to send */
    this._deliveredDue = new Set();
    this._deliveredQueued = false;
  }

  // ---- public API -------------------------------------------------------

  /** Opens the connection (and keeps it open until close() or kicked). */
  connect() {
    if (this.state !== 'idle' && this.state !== 'closed' && this.state !== 'kicked' && this.state !== 'unauthenticated') return;
    this._attempt = 0;
    this._open();
  }

  /** Closes the connection for good; pending sends fail with CLOSED. */
  async close() {
    this._teardown();
    this._clearTimer('reconnect');
    for (const c of this._convs.values()) {
      clearTimeout(c.gapTimer);
      c.gapTimer = null;
    }
    this._setState('closed');
    this._failAllSends(new ImkubeError('CLOSED', 'the client was closed'));
    await this.flush();
  }

  /**
   * Sends a message. The promise resolves with the server's ack once the
   * message is committed; the same cmid is retried (after reconnects, lost
   * acks and retryable errors) until then or until sendDeadlineMs passes.
   * Calling send again with the cmid of a failed send retries it safely.
   * @param {{to: {user: string} | {group: string}, body: string, kind?: string, cmid?: string, replyTo?: number, mentions?: string[]}} p
   * @returns {Promise<Ack>}
   */
  send(p) {
    const cmid = p.cmid ?? newId();
    const existing = this._pending.get(cmid);
    if (existing) return existing.promise;
    if (this.state === 'closed' || this.state === 'kicked' || this.state === 'unauthenticated') {
      return Promise.reject(new ImkubeError('CLOSED', `cannot send: the client is ${this.state}`, { cmid }));
    }
    /** @type {any} */
    const e = {
      cmid,
      frame: { t: 'send', cmid, to: p.to, kind: p.kind ?? 'text', body: p.body, ...sendExtras(p) },
      sent: false,
      waiting: false,
      attempts: 0,
      ackTimer: null,
      retryTimer: null,
      deadlineTimer: null,
    };
    e.promise = new Promise((resolve, reject) => {
      e.resolve = resolve;
      e.reject = reject;
    });
    e.deadlineTimer = setTimeout(
      () => this._failSend(e, new ImkubeError('TIMEOUT', `no ack within ${this.opts.sendDeadlineMs} ms`, { retryable: true, cmid })),
      this.opts.sendDeadlineMs,
    );
    this._pending.set(cmid, e);
    this._pump();
    return e.promise;
  }

  /**
   * Uploads a file (with progress events "upload" and retries) and sends it
   * as an image, file, audio or video message; see media.js.
   * @param {any} file a File/Blob, or {name, type, size, data} in Node
   * @param {Parameters<typeof uploadAndSend>[2]} opts
   */
  uploadAndSend(file, opts) {
    return uploadAndSend(this, file, opts);
  }

  /**
   * A short-lived URL of a media object (needs opts.rest).
   * @param {string} objectKey
   * @param {{thumb?: boolean}} [opts]
   * @returns {Promise<string>}
   */
  mediaUrl(objectKey, opts) {
    if (!this.opts.rest) return Promise.reject(new TypeError('mediaUrl: the client needs opts.rest (a RestClient)'));
    return this.opts.rest.mediaUrl(objectKey, opts);
  }

  /**
   * Moves this user's read cursor of conv (default: to its newest message);
   * the other party gets a read receipt.
   * @param {string} conv
   * @param {number} [seq]
   */
  markRead(conv, seq) {
    const c = this._conv(conv);
    const s = seq ?? c.lastSeq;
    if (s <= c.serverReadSeq && c.unread === 0) return;
    c.readSeq = Math.max(c.readSeq, s);
    if (c.readSeq >= c.lastSeq) c.mentions = 0;
    this._recount(c);
    if (s > c.serverReadSeq) {
      c.serverReadSeq = s;
      c.pendingRead = Math.max(c.pendingRead, s);
      this._flushReads();
    }
    this._emitConv(c);
    this._persistSoon();
  }

  /** @returns {Conversation[]} known conversations, pinned first, then the newest first */
  conversations() {
    return [...this._convs.values()]
      .filter((c) => c.last || c.lastSeq > 0)
      .map((c) => this._summary(c))
      .sort((a, b) => Number(b.pinned) - Number(a.pinned) || (b.last?.ts ?? b.lastTs) - (a.last?.ts ?? a.lastTs));
  }

  // ---- message lifecycle ------------------------------------------------

  /**
   * Recalls message seq of conv (the sender within the recall window, group
   * owners and admins any time). Resolves once the server applied it; the
   * "recall" event and recent() follow from the record.
   * @param {string} conv @param {number} seq
   * @returns {Promise<void>}
   */
  async recall(conv, seq) {
    await this._request({ t: 'recall', conv, seq }, false);
  }

  /**
   * Replaces the body of your message seq of conv (within the edit window).
   * @param {string} conv @param {number} seq @param {string} body
   * @returns {Promise<void>}
   */
  async edit(conv, seq, body) {
    await this._request({ t: 'edit', conv, seq, body }, false);
  }

  /**
   * Deletes messages of conv for this user on every device (others keep them).
   * @param {string} conv @param {number[]} seqs at most 100
   * @returns {Promise<void>}
   */
  async deleteForMe(conv, seqs) {
    await this._request({ t: 'delete', conv, seqs }, false);
    this._applyDelete({ conv, seqs });
  }

  /**
   * Pins (or unpins) conv in this user's conversation list (needs opts.rest).
   * @param {string} conv @param {boolean} [pinned=true]
   */
  async pin(conv, pinned = true) {
    await this._patchConv(conv, { pinned });
  }

  /**
   * Mutes (or unmutes) conv: it still counts unread, and its messages carry
   * muted:true so the app does not alert (needs opts.rest).
   * @param {string} conv @param {boolean} [muted=true]
   */
  async mute(conv, muted = true) {
    await this._patchConv(conv, { muted });
  }

  /** @param {string} conv @param {{pinned?: boolean, muted?: boolean}} patch */
  async _patchConv(conv, patch) {
    if (!this.opts.rest) throw new ImkubeError('BAD_FRAME', 'pin and mute need opts.rest');
    await this.opts.rest.patchConversation(conv, patch);
    const c = this._conv(conv);
    if (patch.pinned !== undefined) c.pinned = patch.pinned;
    if (patch.muted !== undefined) c.muted = patch.muted;
    this._emitConv(c);
    this._persistSoon();
  }

  /**
   * Applies a record that changes another message (delivered in seq order).
   * @param {ConvState} c @param {Message} m
   */
  _applyRecord(c, m) {
    const list = this._recent.get(c.conv) ?? [];
    const target = list.find((x) => x.seq === m.ref);
    if (m.kind === 'recall') {
      if (target) {
        target.recalled = true;
        target.body = '';
        delete target.mentions;
      }
      this.emit('recall', { conv: c.conv, seq: m.ref, by: m.from, record: m });
    } else if (m.kind === 'edit') {
      if (target && !target.recalled) {
        target.body = m.body;
        target.edited = true;
      }
      this.emit('edit', { conv: c.conv, seq: m.ref, body: m.body, by: m.from, record: m });
    }
    if (target && c.last && c.last.seq === target.seq) c.last = target;
    this._emitConv(c);
    this._persistSoon();
  }

  /** @param {{conv: string, seqs?: number[]}} m a delete record (your own devices) */
  _applyDelete(m) {
    // The request applies it at once and its record follows: one event.
    const hidden = this._hidden ?? (this._hidden = new Set());
    const seqs = new Set((m.seqs ?? []).filter((n) => !hidden.has(`${m.conv}|${n}`)));
    if (seqs.size === 0) return;
    for (const n of seqs) hidden.add(`${m.conv}|${n}`);
    while (hidden.size > MAX_SEEN) hidden.delete(/** @type {string} */ (hidden.values().next().value));
    const list = this._recent.get(m.conv);
    if (list) {
      const kept = list.filter((x) => !seqs.has(x.seq));
      if (kept.length !== list.length) {
        this._recent.set(m.conv, kept);
        const c = this._conv(m.conv);
        if (c.last && seqs.has(c.last.seq)) c.last = kept[kept.length - 1] ?? null;
        this._emitConv(c);
      }
    }
    this.emit('delete', { conv: m.conv, seqs: [...seqs] });
    this._persistSoon();
  }

  /** @param {string} conv @returns {Conversation} */
  conversation(conv) {
    return this._summary(this._conv(conv));
  }

  /** @param {string} conv @returns {Message[]} the recent messages kept for conv, oldest first */
  recent(conv) {
    return [...(this._recent.get(conv) ?? [])];
  }

  /**
   * Loads messages of conv from the server without emitting them (history).
   * @param {string} conv
   * With beforeSeq: the newest messages before it (ascending; more = older ones exist).
   * @param {{fromSeq?: number, toSeq?: number, beforeSeq?: number, limit?: number}} [q]
   * @returns {Promise<{items: Message[], more: boolean}>}
   */
  async history(conv, q = {}) {
    /** @type {any} */
    const frame = q.beforeSeq != null
      ? { t: 'pull', conv, before: q.beforeSeq, limit: q.limit ?? this.opts.pageLimit }
      : { t: 'pull', conv, from: q.fromSeq ?? 1, limit: q.limit ?? this.opts.pageLimit };
    if (q.toSeq != null && q.beforeSeq == null) frame.to = q.toSeq;
    const r = await this._request(frame, false);
    return { items: r.items ?? [], more: !!r.more };
  }

  /** Reloads the conversation list (unread counts) from the REST API, when opts.rest is set. */
  async refreshConversations() {
    if (!this.opts.rest) return this.conversations();
    const list = await this.opts.rest.conversations();
    for (const info of list) {
      const c = this._conv(info.conv);
      c.readSeq = Math.max(c.readSeq, info.readSeq ?? 0);
      c.serverReadSeq = Math.max(c.serverReadSeq, info.readSeq ?? 0);
      c.lastTs = Math.max(c.lastTs, Number(info.lastTs) || 0);
      c.pinned = !!info.pinned;
      c.muted = !!info.muted;
      if (typeof info.mentions === 'number') c.mentions = info.mentions;
      if ((info.lastSeq ?? 0) > c.lastSeq) {
        // The server knows messages this device has not received yet.
        c.lastSeq = info.lastSeq;
        c.unread = Math.max(0, info.unread ?? c.lastSeq - c.readSeq);
      } else {
        this._recount(c);
      }
      this._emitConv(c);
    }
    return this.conversations();
  }

  /** Writes the cursors and recent messages to the storage hook now. */
  async flush() {
    this._clearTimer('persist');
    if (!this._loadedKey) return;
    try {
      await this.storage.set(this._loadedKey, this._snapshot());
    } catch (err) {
      this._log('warn', 'persist failed', err);
    }
  }

  /** @returns {number} the inbox position up to which messages were handed to the app */
  get inboxSeq() {
    return this._inboxSeq;
  }

  // ---- connection -------------------------------------------------------

  async _open() {
    this._clearTimer('reconnect');
    const gen = ++this._gen;
    this._setState('connecting');
    let token;
    try {
      token = this._token ?? (typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token);
    } catch (err) {
      if (gen === this._gen) this._scheduleReconnect();
      return;
    }
    if (gen !== this._gen) return;
    let ws;
    try {
      ws = new this.WS(this.opts.url);
    } catch (err) {
      this._log('warn', 'websocket constructor failed', err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._lastRx = Date.now();
    ws.onopen = () => {
      if (gen !== this._gen) return;
      this._setState('authenticating');
      this._raw({ t: 'auth', token, device: this.opts.device });
      this._startPing();
      this._clearTimer('auth');
      this._timers.auth = setTimeout(() => {
        if (gen !== this._gen || this._authed || this._held) return;
        this._log('info', 'no auth_ok in time; reconnecting');
        this._teardown();
        this._scheduleReconnect();
      }, this.opts.requestTimeoutMs);
    };
    ws.onmessage = (/** @type {{data: any}} */ ev) => {
      if (gen !== this._gen) return;
      this._lastRx = Date.now();
      let f;
      try {
        f = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        this._log('warn', 'ignoring a frame that is not JSON');
        return;
      }
      if (this._held) this._held.push(f);
      else this._onFrame(f, gen);
    };
    ws.onclose = () => {
      if (gen !== this._gen) return;
      this._teardown();
      this._scheduleReconnect();
    };
    ws.onerror = () => {};
  }

  /** Drops the current connection (if any) and forgets its in-flight requests. */
  _teardown() {
    this._gen++;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this._authed = false;
    this._held = null;
    this._clearTimer('ping');
    this._clearTimer('sync');
    this._clearTimer('auth');
    for (const r of this._reqs.values()) {
      clearTimeout(r.timer);
      r.reject(new ImkubeError('DISCONNECTED', 'the connection was lost'));
    }
    this._reqs.clear();
    for (const e of this._pending.values()) {
      e.sent = false;
      clearTimeout(e.ackTimer);
    }
    this._syncing = 0;
    for (const c of this._convs.values()) c.pulling = 0;
  }

  /**
   * The server closes a connection whose token is about to expire with
   * reauth: refresh the (still valid) token, then reconnect with the new one.
   * Sends stay queued and are resent after the reconnect. A refused refresh
   * (the session ended) leaves the client unauthenticated: log in again.
   */
  async _reauth() {
    const gen = this._gen;
    this._setState('offline', { retryInMs: 0 });
    const rest = this.opts.rest;
    const refresh = this.opts.refresh ?? (rest ? async () => (await rest.refresh()).token : null);
    if (refresh) {
      try {
        const next = await refresh();
        if (next) this._token = next;
      } catch (/** @type {any} */ err) {
        if (gen !== this._gen) return;
        if (err?.status === 401 || err?.status === 403) {
          const e = new ImkubeError('UNAUTHENTICATED', 'the session has ended: log in again');
          this._setState('unauthenticated');
          this._failAllSends(e);
          this.emit('error', e);
          return;
        }
        this._log('warn', 'token refresh failed; reconnecting with the current token', err);
      }
    }
    if (gen !== this._gen || this.state !== 'offline') return;
    this._scheduleReconnect(0);
  }

  /** @param {number} [delayMs] */
  _scheduleReconnect(delayMs) {
    if (['closed', 'kicked', 'unauthenticated'].includes(this.state)) return;
    const d = delayMs ?? this._reconnectAfterMs ?? backoffDelay(this._attempt, this.opts.backoff, this.random);
    this._reconnectAfterMs = null;
    this._attempt++;
    this._setState('offline', { retryInMs: d });
    this._clearTimer('reconnect');
    this._timers.reconnect = setTimeout(() => this._open(), d);
  }

  _startPing() {
    this._clearTimer('ping');
    const iv = this.opts.pingIntervalMs;
    this._timers.ping = setInterval(() => {
      if (Date.now() - this._lastRx > 2 * iv) {
        this._log('info', 'no frames from the server; reconnecting');
        this._teardown();
        this._scheduleReconnect();
        return;
      }
      this._raw({ t: 'ping' });
    }, iv);
  }

  /** @param {any} frame */
  _raw(frame) {
    const ws = this._ws;
    if (!ws) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      this._log('warn', 'websocket send failed', err);
      return false;
    }
  }

  /**
   * Sends a request frame with a fresh id and resolves with its answer.
   * @param {any} frame
   * @param {boolean} [renewOnTimeout=true] a timeout means the connection is broken: renew it
   * @returns {Promise<any>}
   */
  _request(frame, renewOnTimeout = true) {
    if (!this._authed) return Promise.reject(new ImkubeError('DISCONNECTED', 'not connected'));
    const id = `r${++this._reqSeq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._reqs.delete(id);
        reject(new ImkubeError('TIMEOUT', `${frame.t} got no answer`));
        if (renewOnTimeout && this._authed) {
          this._teardown();
          this._scheduleReconnect(0);
        }
      }, this.opts.requestTimeoutMs);
      this._reqs.set(id, { resolve, reject, timer });
      this._raw({ ...frame, id });
    });
  }

  /** @param {string} id @param {any} [value] @param {any} [err] */
  _answer(id, value, err) {
    const r = this._reqs.get(id);
    if (!r) return;
    this._reqs.delete(id);
    clearTimeout(r.timer);
    if (err) r.reject(err);
    else r.resolve(value);
  }

  /** @param {any} f @param {number} gen */
  _onFrame(f, gen) {
    switch (f.t) {
      case 'auth_ok':
        this._onAuthOK(f, gen);
        break;
      case 'ack':
        this._onAck(f);
        break;
      case 'msg':
        if (typeof f.inboxSeq === 'number' && f.inboxSeq > 0) this._ingestInbox(f);
        else this._ingestConv(f);
        break;
      case 'notify':
        this._convNews(f.conv, f.seq);
        break;
      case 'sync_result':
      case 'pull_result':
      case 'ok':
        this._answer(f.id, f);
        break;
      case 'receipt':
      case 'read_sync':
      case 'typing':
      case 'presence':
      case 'ok':
        this._onSignal(f);
        break;
      case 'recall':
        this._onRecall(f);
        break;
      case 'event':
        // A social event has a place in the inbox: take it in order.
        if (typeof f.inboxSeq === 'number' && f.inboxSeq > 0) this._ingestInbox(f);
        else this._onEvent(f);
        break;
      case 'pong':
        break;
      case 'broadcast':
        // An operator's announcement to everyone online (not stored).
        this.emit('broadcast', { id: f.id, from: f.from, kind: f.kind, body: f.body, ts: f.ts });
        break;
      case 'kicked':
        this._teardown();
        this._setState('kicked', { reason: f.reason });
        this._failAllSends(new ImkubeError('KICKED', `signed out: ${f.reason}`));
        this.emit('kicked', f);
        break;
      case 'reconnect':
        this._teardown();
        this._scheduleReconnect(Math.max(0, Number(f.afterMs) || 0));
        break;
      case 'reauth':
        this._teardown();
        this._reauth();
        break;
      case 'error':
        this._onError(f);
        break;
      default:
        this._log('debug', `ignoring frame type ${f.t}`);
    }
  }

  /** @param {any} f @param {number} gen */
  async _onAuthOK(f, gen) {
    this.user = f.user;
    const key = `imkube:${f.user}:${this.opts.device}`;
    if (this._loadedKey !== key) {
      this._held = [];
      await this._load(key);
      if (gen !== this._gen) return;
    }
    this._authed = true;
    this._attempt = 0;
    this._setState('online');
    const held = this._held ?? [];
    this._held = null;
    this._flushReads();
    this._signalsOnline(f);
    this._pump();
    if (this.opts.syncIntervalMs > 0) {
      this._clearTimer('sync');
      this._timers.sync = setInterval(() => this._syncInbox(), this.opts.syncIntervalMs);
    }
    for (const h of held) if (gen === this._gen) this._onFrame(h, gen);
    if (this.opts.rest) this.refreshConversations().catch((err) => this._log('warn', 'conversation list failed', err));
    // The inbox first (paging while more), then read-diffusion groups with news.
    await this._syncInbox();
    if (gen !== this._gen) return;
    for (const c of f.convs ?? []) this._convNews(c.conv, c.lastSeq);
    for (const c of this._convs.values()) this._convGap(c);
    for (const c of this._convs.values()) {
      const before = c.unread;
      this._recount(c);
      if (c.unread !== before) this._emitConv(c);
    }
    this.emit('synced', { inboxSeq: this._inboxSeq });
  }

  /** @param {any} f */
  _onError(f) {
    const err = new ImkubeError(f.code, f.message, { retryable: !!f.retryable, cmid: f.cmid });
    if (f.cmid && this._pending.has(f.cmid)) {
      const e = this._pending.get(f.cmid);
      clearTimeout(e.ackTimer);
      e.sent = false;
      if (f.retryable) {
        e.waiting = true;
        const d = f.retryAfterMs ?? backoffDelay(e.attempts, { baseMs: 250, maxMs: 5000 }, this.random);
        e.retryTimer = setTimeout(() => {
          e.waiting = false;
          this._pump();
        }, d);
      } else {
        this._failSend(e, err);
      }
      return;
    }
    if (f.id && this._reqs.has(f.id)) {
      this._answer(f.id, undefined, err);
      return;
    }
    if (f.code === 'UNAUTHENTICATED' || f.code === 'BANNED') {
      // BANNED: an operator banned the account; reconnecting cannot help.
      this._teardown();
      this._setState('unauthenticated');
      this._failAllSends(err);
    }
    this.emit('error', err);
  }

  // ---- sends --------------------------------------------------------------

  _pump() {
    if (!this._authed) return;
    let inFlight = 0;
    for (const e of this._pending.values()) if (e.sent) inFlight++;
    for (const e of this._pending.values()) {
      if (inFlight >= this.opts.maxInFlight) break;
      if (e.sent || e.waiting) continue;
      if (!this._raw(e.frame)) return;
      e.sent = true;
      e.attempts++;
      inFlight++;
      e.ackTimer = setTimeout(() => {
        e.sent = false;
        this._pump();
      }, this.opts.ackTimeoutMs);
    }
  }

  /** @param {any} f */
  _onAck(f) {
    const e = this._pending.get(f.cmid);
    if (!e) return; // a duplicate ack
    this._clearSend(e);
    this._pending.delete(f.cmid);
    /** @type {Ack} */
    const ack = { cmid: f.cmid, mid: f.mid, conv: f.conv, seq: f.seq, ts: f.ts };
    /** @type {Message} */
    const m = { mid: f.mid, conv: f.conv, seq: f.seq, from: this.user ?? '', kind: e.frame.kind, body: e.frame.body, ts: f.ts, cmid: f.cmid, ...sendExtras(e.frame) };
    if (typeof f.inboxSeq === 'number' && f.inboxSeq > 0) this._ingestInbox({ ...m, inboxSeq: f.inboxSeq });
    else this._ingestConv(m);
    e.resolve(ack);
    this._pump();
  }

  /** @param {any} e */
  _clearSend(e) {
    clearTimeout(e.ackTimer);
    clearTimeout(e.retryTimer);
    clearTimeout(e.deadlineTimer);
  }

  /** @param {any} e @param {ImkubeError} err */
  _failSend(e, err) {
    if (this._pending.get(e.cmid) !== e) return;
    this._clearSend(e);
    this._pending.delete(e.cmid);
    e.reject(err);
    this._pump();
  }

  /** @param {ImkubeError} err */
  _failAllSends(err) {
    for (const e of [...this._pending.values()]) this._failSend(e, err);
  }

  _flushReads() {
    if (!this._authed) return;
    for (const c of this._convs.values()) {
      if (c.pendingRead > 0 && this._raw({ t: 'read', conv: c.conv, seq: c.pendingRead })) c.pendingRead = 0;
    }
  }

  // ---- delivery: inbox order (write diffusion) ---------------------------

  /** @param {Message} m */
  _ingestInbox(m) {
    const n = /** @type {number} */ (m.inboxSeq);
    if (n <= this._inboxSeq) return;
    if (n === this._inboxSeq + 1) {
      this._inboxSeq = n;
      this._inboxItem(m);
      this._drainInbox();
      return;
    }
    if (!this._inboxBuf.has(n)) this._inboxBuf.set(n, m);
    this._syncInbox();
  }

  _drainInbox() {
    for (let m = this._inboxBuf.get(this._inboxSeq + 1); m; m = this._inboxBuf.get(this._inboxSeq + 1)) {
      this._inboxBuf.delete(this._inboxSeq + 1);
      this._inboxSeq++;
      this._inboxItem(m);
    }
    this._persistSoon();
  }

  /**
   * Declares every inbox position up to n settled: buffered messages up to n
   * are handed on in order, missing ones are taken as nonexistent.
   * @param {number} n
   */
  _inboxSkipTo(n) {
    if (n <= this._inboxSeq) return;
    const keys = [...this._inboxBuf.keys()].filter((k) => k <= n).sort((a, b) => a - b);
    for (const k of keys) {
      const m = /** @type {Message} */ (this._inboxBuf.get(k));
      this._inboxBuf.delete(k);
      this._inboxSeq = k;
      this._inboxItem(m);
    }
    this._inboxSeq = n;
    this._drainInbox();
  }

  /** @returns {number} the end of the first inbox gap (lowest buffered - 1), or 0 when none */
  _inboxGapEnd() {
    let lo = Infinity;
    for (const k of this._inboxBuf.keys()) if (k < lo) lo = k;
    return lo === Infinity ? 0 : lo - 1;
  }

  /**
   * Syncs the inbox from the cursor: the whole backlog (paging while more) and
   * exactly the missing range of a gap. One loop runs per connection; calls
   * during it make it go round once more.
   */
  _syncInbox() {
    const gen = this._gen;
    if (!this._authed) return Promise.resolve();
    if (this._syncing === gen && this._syncDone) {
      this._resync = true;
      return this._syncDone;
    }
    this._syncing = gen;
    this._syncDone = this._syncLoop(gen).finally(() => {
      if (this._syncing === gen) this._syncing = 0;
    });
    return this._syncDone;
  }

  /** @param {number} gen */
  async _syncLoop(gen) {
    try {
      for (let i = 0; i < MAX_LOOP && gen === this._gen; i++) {
        this._resync = false;
        const after = this._inboxSeq;
        const gapEnd = this._inboxGapEnd();
        const limit = gapEnd > after ? Math.min(this.opts.pageLimit, gapEnd - after) : this.opts.pageLimit;
        const r = await this._request({ t: 'sync', after, limit });
        if (gen !== this._gen) return;
        const items = /** @type {Message[]} */ (r.items ?? []);
        for (const m of items) if (typeof m.inboxSeq === 'number') this._ingestInbox(m);
        // Positions below the last item that did not come do not exist.
        if (items.length > 0) this._inboxSkipTo(/** @type {number} */ (items[items.length - 1].inboxSeq));
        else if (!r.more && gapEnd > after) this._inboxSkipTo(gapEnd);
        const gapLeft = this._inboxGapEnd() > this._inboxSeq;
        if (this._resync && gapLeft) continue; // a gap opened while this request was out
        if (this._inboxSeq <= after) break; // no progress: try again on the next trigger
        if (gapEnd > after ? !gapLeft : !r.more && !gapLeft) break;
      }
    } catch (err) {
      this._log('debug', 'sync interrupted', err);
    }
  }

  // ---- delivery: conversation order ----------------------------------------

  /** @param {string} conv @returns {ConvState} */
  _conv(conv) {
    let c = this._convs.get(conv);
    if (!c) {
      c = {
        conv,
        seq: conv.startsWith('u:') ? 0 : null,
        buf: new Map(),
        lastSeq: 0,
        readSeq: 0,
        unread: 0,
        peerReadSeq: 0,
        peerDeliveredSeq: 0,
        deliveredSent: 0,
        readDiffusion: false,
        last: null,
        pulling: 0,
        pullTarget: 0,
        gapTimer: null,
        gapDefers: 0,
        pendingRead: 0,
        serverReadSeq: 0,
        lastTs: 0,
        mentions: 0,
        pinned: false,
        muted: false,
      };
      this._convs.set(conv, c);
    }
    return c;
  }

  /** @param {Message} m */
  _ingestConv(m) {
    if (m && m.kind === 'delete' && Array.isArray(/** @type {any} */ (m).seqs)) {
      // A delete record has a place in the inbox only (seq 0).
      if (!this._seen.has(m.mid)) this._applyDelete(/** @type {any} */ (m));
      if (m.mid) this._seen.add(m.mid);
      return;
    }
    if (!m || typeof m.conv !== 'string' || typeof m.seq !== 'number') return;
    if (this._seen.has(m.mid)) return;
    const c = this._conv(m.conv);
    if (c.seq === null) c.seq = m.seq - 1; // first sight of a group: start here
    if (m.seq <= c.seq) return;
    if (m.seq === c.seq + 1) {
      this._deliver(c, m);
      this._drainConv(c);
      return;
    }
    if (!c.buf.has(m.seq)) c.buf.set(m.seq, m);
    this._convGap(c);
  }

  /** @param {ConvState} c */
  _drainConv(c) {
    for (let m = c.buf.get(/** @type {number} */ (c.seq) + 1); m; m = c.buf.get(/** @type {number} */ (c.seq) + 1)) {
      c.buf.delete(m.seq);
      this._deliver(c, m);
    }
    if (c.buf.size === 0) c.gapDefers = 0;
  }

  /** @param {ConvState} c @param {number} n settle every seq up to n */
  _convSkipTo(c, n) {
    if (c.seq !== null && n <= c.seq) return;
    const keys = [...c.buf.keys()].filter((k) => k <= n).sort((a, b) => a - b);
    for (const k of keys) {
      const m = /** @type {Message} */ (c.buf.get(k));
      c.buf.delete(k);
      this._deliver(c, m);
    }
    c.seq = Math.max(c.seq ?? 0, n);
    this._drainConv(c);
  }

  /** @param {ConvState} c */
  _convGap(c) {
    if (c.buf.size === 0 || c.gapTimer) return;
    c.gapTimer = setTimeout(() => {
      c.gapTimer = null;
      this._fillConvGap(c);
    }, this.opts.gapWaitMs);
  }

  /** @param {ConvState} c */
  _fillConvGap(c) {
    if (c.buf.size === 0 || !this._authed) return;
    const lo = Math.min(...c.buf.keys());
    if (c.seq === null || lo <= c.seq + 1) {
      this._drainConv(c);
      return;
    }
    // In write diffusion the inbox sync usually brings the missing messages.
    if (!c.readDiffusion && (this._syncing || this._inboxBuf.size > 0) && c.gapDefers++ < 20) {
      this._convGap(c);
      return;
    }
    this._pullRange(c, lo - 1);
  }

  /**
   * News for a conversation (notify, auth_ok convs): pull what is missing.
   * @param {string} conv
   * @param {number} lastSeq
   */
  _convNews(conv, lastSeq) {
    if (typeof conv !== 'string' || typeof lastSeq !== 'number') return;
    const c = this._conv(conv);
    c.readDiffusion = true;
    if (c.seq === null) c.seq = Math.max(0, lastSeq - this.opts.initialPull);
    if (lastSeq > c.seq) this._pullRange(c, lastSeq);
  }

  /**
   * Pulls exactly seqs (c.seq, to] of c, paging; one loop per conversation.
   * @param {ConvState} c
   * @param {number} to
   */
  async _pullRange(c, to) {
    c.pullTarget = Math.max(c.pullTarget, to);
    const gen = this._gen;
    if (!this._authed || c.pulling === gen) return;
    c.pulling = gen;
    try {
      for (let i = 0; i < MAX_LOOP && gen === this._gen && (c.seq ?? 0) < c.pullTarget; i++) {
        const from = (c.seq ?? 0) + 1;
        const end = Math.min(c.pullTarget, from + this.opts.pageLimit - 1);
        let r;
        try {
          r = await this._request({ t: 'pull', conv: c.conv, from, to: end, limit: end - from + 1 });
        } catch (err) {
          if (err instanceof ImkubeError && ['DISCONNECTED', 'TIMEOUT'].includes(err.code)) throw err;
          // FORBIDDEN, NOT_FOUND, ...: these messages cannot be had; do not stall the rest.
          this._log('warn', `pull ${c.conv} failed`, err);
          this._convSkipTo(c, end);
          continue;
        }
        if (gen !== this._gen) return;
        const items = /** @type {Message[]} */ (r.items ?? []);
        for (const m of items) if (m.conv === c.conv || !m.conv) this._ingestConv({ ...m, conv: c.conv });
        if (!r.more) this._convSkipTo(c, end);
        else if (items.length > 0) this._convSkipTo(c, items[items.length - 1].seq);
        else break;
      }
    } catch (err) {
      this._log('debug', 'pull interrupted', err);
    } finally {
      if (c.pulling === gen) c.pulling = 0;
    }
    if (gen === this._gen && c.buf.size > 0) this._convGap(c);
  }

  /** @param {ConvState} c @param {Message} m */
  _deliver(c, m) {
    c.seq = m.seq;
    if (this._seen.has(m.mid)) return;
    this._seen.add(m.mid);
    if (this._seen.size > MAX_SEEN) {
      const first = this._seen.values().next().value;
      if (first !== undefined) this._seen.delete(first);
    }
    /** @type {Message} */
    const out = { mid: m.mid, conv: m.conv, seq: m.seq, from: m.from, kind: m.kind, body: m.body, ts: m.ts };
    if (m.inboxSeq) out.inboxSeq = m.inboxSeq;
    if (m.recalled) out.recalled = true;
    if (m.edited) out.edited = true;
    if (m.ref) out.ref = m.ref;
    if (m.replyTo) out.replyTo = m.replyTo;
    if (Array.isArray(m.mentions) && m.mentions.length > 0) out.mentions = m.mentions;
    if (m.muted) out.muted = true;
    if (m.cmid) out.cmid = m.cmid;
    if (out.kind === 'recall' || out.kind === 'edit') {
      // A record: it changes message ref and is no message of its own.
      c.lastSeq = Math.max(c.lastSeq, m.seq);
      if (out.from === this.user) c.readSeq = Math.max(c.readSeq, m.seq);
      this._applyRecord(c, out);
      return;
    }
    // Messages up to lastSeq are already counted (e.g. by the server's list).
    const fresh = m.seq > c.lastSeq;
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    c.lastTs = Math.max(c.lastTs, m.ts || 0);
    if (!c.last || m.seq >= c.last.seq) c.last = out;
    if (out.from === this.user) {
      c.readSeq = Math.max(c.readSeq, m.seq);
      c.unread = 0;
    } else if (fresh && m.seq > c.readSeq) {
      c.unread++;
      if (out.mentions && (out.mentions.includes(this.user ?? '') || out.mentions.includes('all'))) c.mentions++;
    }
    // A send moves the sender's own read cursor without a receipt (receipts
    // go out only when a read moves it): in a 1:1 conversation the peer's
    // message at seq S says the peer has read up to S.
    if (out.from !== this.user && c.conv.startsWith('u:') && m.seq > c.peerReadSeq) {
      c.peerReadSeq = m.seq;
    }
    if (out.from !== this.user) this._confirmDelivered(c, m.seq);
    let list = this._recent.get(c.conv);
    if (!list) {
      list = [];
      this._recent.set(c.conv, list);
    }
    list.push(out);
    if (list.length > this.opts.recentLimit) list.splice(0, list.length - this.opts.recentLimit);
    this.emit('message', out);
    if (out.kind === 'group_event') this._emitGroupEvent(out);
    this._emitConv(c);
    this._persistSoon();
  }

  /** @param {Message} m */
  _emitGroupEvent(m) {
    let body = {};
    try {
      body = JSON.parse(m.body);
    } catch {
      // a malformed body: the event still says something changed
    }
    this.emit('groupEvent', { ...body, conv: m.conv, seq: m.seq, ts: m.ts });
  }

  /** @param {any} f */
  _onRecall(f) {
    const list = this._recent.get(f.conv) ?? [];
    for (const m of list) if (m.mid === f.mid || m.seq === f.seq) m.recalled = true;
    this.emit('recall', f);
    this._persistSoon();
  }

  // ---- signals: receipts, read sync, typing, presence ---------------------

  /**
   * Tells the other members of conv that this user is typing. Call it on
   * every keystroke: at most one frame per conversation per typingIntervalMs
   * goes out (the server drops more anyway).
   * @param {string} conv
   */
  typing(conv) {
    const now = Date.now();
    const last = this._typingSent.get(conv) ?? 0;
    if (!this._authed || now - last < this.opts.typingIntervalMs) return;
    this._typingSent.set(conv, now);
    if (this._typingSent.size > 256) this._typingSent.delete(this._typingSent.keys().next().value ?? '');
    this._raw({ t: 'typing', conv });
  }

  /**
   * Watches users' online state: "presence" events now and on every change,
   * also after reconnects. Only users you share a conversation with
   * (FORBIDDEN otherwise, and nothing is watched).
   * @param {string[]} users
   * @returns {Promise<void>}
   */
  async subscribePresence(users) {
    const list = [...new Set(users)];
    for (let i = 0; i < list.length; i += 200) {
      const part = list.slice(i, i + 200);
      const fresh = part.filter((u) => !this._presenceSubs.has(u));
      for (const u of part) this._presenceSubs.add(u);
      try {
        await this._request({ t: 'presence_sub', users: part }, false);
      } catch (err) {
        if (err instanceof ImkubeError && !['DISCONNECTED', 'TIMEOUT'].includes(err.code)) {
          for (const u of fresh) this._presenceSubs.delete(u);
        }
        throw err;
      }
    }
  }

  /**
   * Stops watching users (all when users is omitted).
   * @param {string[]} [users]
   */
  async unsubscribePresence(users) {
    const list = users ?? [...this._presenceSubs];
    for (const u of list) {
      this._presenceSubs.delete(u);
      this._presence.delete(u);
    }
    if (!this._authed) return;
    for (let i = 0; i < list.length || (i === 0 && !users); i += 200) {
      await this._request(users ? { t: 'presence_unsub', users: list.slice(i, i + 200) } : { t: 'presence_unsub' }, false);
      if (!users) break;
    }
  }

  /**
   * @param {string} user
   * @returns {{user: string, online: boolean, lastSeen: number}|undefined} the last presence heard of a watched user
   */
  presence(user) {
    return this._presence.get(user);
  }

  /**
   * How many members (other than the sender) have read message seq of conv,
   * and who (one-to-one chats and groups up to the write-diffusion threshold).
   * Needs opts.rest.
   * @param {string} conv
   * @param {number} seq
   * @returns {Promise<{readCount: number, unreadCount: number, readers?: string[]}>}
   */
  reads(conv, seq) {
    if (!this.opts.rest) return Promise.reject(new ImkubeError('BAD_FRAME', 'reads() needs the rest option'));
    return this.opts.rest.reads(conv, seq);
  }

  /** @param {any} f a receipt, read_sync, typing, presence or ok frame */
  _onSignal(f) {
    switch (f.t) {
      case 'receipt': {
        const c = this._conv(f.conv);
        if (f.user !== this.user && f.kind === 'read' && f.seq > c.peerReadSeq) {
          c.peerReadSeq = f.seq;
          this._emitConv(c);
        }
        if (f.user !== this.user && f.kind === 'delivered' && f.seq > c.peerDeliveredSeq) {
          c.peerDeliveredSeq = f.seq;
          this._emitConv(c);
        }
        this.emit('receipt', f);
        break;
      }
      case 'read_sync':
        // Under write diffusion it has a place in the inbox: take it in order.
        if (typeof f.inboxSeq === 'number' && f.inboxSeq > 0) this._ingestInbox(f);
        else this._onReadSync(f);
        break;
      case 'typing':
        if (f.user !== this.user) this.emit('typing', { conv: f.conv, user: f.user });
        break;
      case 'presence': {
        if (!this._presenceSubs.has(f.user)) break;
        const p = { user: f.user, online: !!f.online, lastSeen: Number(f.lastSeen) || 0 };
        this._presence.set(f.user, p);
        this.emit('presence', p);
        break;
      }
      case 'ok':
        this._answer(f.id, f);
        break;
    }
  }

  /**
   * An inbox item: a message, or a read record of another device.
   * @param {any} m
   */
  _inboxItem(m) {
    if (m.t === 'read_sync') this._onReadSync(m);
    else if (m.t === 'event') this._onEvent(m);
    else this._ingestConv(m);
  }

  /**
   * A social event of this user's inbox (each once, in inbox order, also
   * when it arrived by sync): emitted as "event" ({kind, data, ts}) and as
   * "friendRequest" (the request), "friendAdded" ({userId, requestId,
   * since}) or "friendRemoved" ({userId}).
   * @param {{kind: string, data: any, ts?: number}} f
   */
  _onEvent(f) {
    const e = { kind: f.kind, data: f.data ?? null, ts: Number(f.ts) || 0 };
    this.emit('event', e);
    const named = { friend_request: 'friendRequest', friend_added: 'friendAdded', friend_removed: 'friendRemoved' }[f.kind];
    if (named) this.emit(named, e.data);
  }

  /**
   * This user read conv up to seq on another device: the local cursor and
   * unread count follow.
   * @param {{conv: string, seq: number}} f
   */
  _onReadSync(f) {
    if (typeof f.conv !== 'string' || typeof f.seq !== 'number') return;
    const c = this._conv(f.conv);
    c.serverReadSeq = Math.max(c.serverReadSeq, f.seq);
    if (f.seq <= c.readSeq) return;
    c.readSeq = f.seq;
    this._recount(c);
    this.emit('readSync', { conv: f.conv, seq: f.seq });
    this._emitConv(c);
    this._persistSoon();
  }

  /** After auth_ok: cursors of read-diffusion groups, delivered frames, presence. @param {any} f */
  _signalsOnline(f) {
    for (const c of f.convs ?? []) if (typeof c.readSeq === 'number') this._onReadSync({ conv: c.conv, seq: c.readSeq });
    this._flushDelivered();
    if (this._presenceSubs.size > 0) {
      this.subscribePresence([...this._presenceSubs]).catch((err) => this._log('warn', 'presence resubscribe failed', err));
    }
  }

  /**
   * Confirms a one-to-one message from the other party with delivered
   * (coalesced: one frame per conversation for a batch of messages).
   * @param {ConvState} c
   * @param {number} seq
   */
  _confirmDelivered(c, seq) {
    if (!this.opts.autoDelivered || !c.conv.startsWith('u:') || seq <= c.deliveredSent) return;
    c.deliveredSent = seq;
    this._deliveredDue.add(c.conv);
    if (this._deliveredQueued) return;
    this._deliveredQueued = true;
    Promise.resolve().then(() => {
      this._deliveredQueued = false;
      this._flushDelivered();
    });
  }

  _flushDelivered() {
    if (!this._authed) return;
    for (const conv of this._deliveredDue) {
      const c = this._conv(conv);
      if (this._raw({ t: 'delivered', conv, seq: c.deliveredSent })) this._deliveredDue.delete(conv);
    }
  }

  // ---- state, persistence ------------------------------------------------

  /**
   * Recounts unread messages from the recent list when it reaches back to the
   * read cursor (own messages never count).
   * @param {ConvState} c
   */
  _recount(c) {
    const list = this._recent.get(c.conv) ?? [];
    if (c.lastSeq <= c.readSeq) c.unread = 0;
    else if (list.length > 0 && list[0].seq <= c.readSeq + 1) {
      c.unread = list.filter((m) => m.seq > c.readSeq && m.from !== this.user).length;
    } else c.unread = Math.min(c.unread, c.lastSeq - c.readSeq);
  }

  /** @param {ConvState} c @returns {Conversation} */
  _summary(c) {
    return {
      conv: c.conv,
      lastSeq: c.lastSeq,
      readSeq: c.readSeq,
      unread: c.unread,
      peerReadSeq: c.peerReadSeq,
      peerDeliveredSeq: Math.max(c.peerDeliveredSeq, c.peerReadSeq),
      readDiffusion: c.readDiffusion,
      last: c.last,
      lastTs: c.lastTs,
      mentions: c.mentions,
      pinned: c.pinned,
      muted: c.muted,
    };
  }

  /** @param {ConvState} c */
  _emitConv(c) {
    this.emit('conversation', this._summary(c));
  }

  /** @param {State} state @param {object} [extra] */
  _setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  /** @param {'reconnect'|'ping'|'sync'|'persist'|'auth'} name */
  _clearTimer(name) {
    const t = this._timers[name];
    if (t) {
      clearTimeout(t);
      clearInterval(t);
    }
    this._timers[name] = null;
  }

  _persistSoon() {
    if (this._timers.persist || !this._loadedKey) return;
    this._timers.persist = setTimeout(() => {
      this._timers.persist = null;
      this.flush();
    }, 100);
  }

  _snapshot() {
    // Never store a cursor past a message the app has not seen yet.
    let inbox = this._inboxSeq;
    /** @type {Record<string, any>} */
    const convs = {};
    for (const c of this._convs.values()) {
      for (const m of c.buf.values()) if (m.inboxSeq) inbox = Math.min(inbox, m.inboxSeq - 1);
      convs[c.conv] = {
        seq: c.seq,
        lastSeq: c.lastSeq,
        readSeq: c.readSeq,
        unread: c.unread,
        peerReadSeq: c.peerReadSeq,
        peerDeliveredSeq: c.peerDeliveredSeq,
        deliveredSent: c.deliveredSent,
        readDiffusion: c.readDiffusion,
        last: c.last,
        pendingRead: c.pendingRead,
        serverReadSeq: c.serverReadSeq,
        lastTs: c.lastTs,
        mentions: c.mentions,
        pinned: c.pinned,
        muted: c.muted,
      };
    }
    /** @type {Record<string, Message[]>} */
    const recent = {};
    for (const [k, v] of this._recent) recent[k] = v;
    return { v: 1, inboxSeq: inbox, convs, recent };
  }

  /** @param {string} key */
  async _load(key) {
    let s;
    try {
      s = await this.storage.get(key);
    } catch (err) {
      this._log('warn', 'loading stored state failed', err);
    }
    this._loadedKey = key;
    this._inboxSeq = 0;
    this._inboxBuf.clear();
    this._convs.clear();
    this._recent.clear();
    this._seen.clear();
    if (!s || s.v !== 1) return;
    this._inboxSeq = Number(s.inboxSeq) || 0;
    for (const [conv, v] of Object.entries(s.convs ?? {})) {
      const c = this._conv(conv);
      Object.assign(c, {
        seq: v.seq ?? c.seq,
        lastSeq: v.lastSeq ?? 0,
        readSeq: v.readSeq ?? 0,
        unread: v.unread ?? 0,
        peerReadSeq: v.peerReadSeq ?? 0,
        peerDeliveredSeq: v.peerDeliveredSeq ?? 0,
        deliveredSent: v.deliveredSent ?? 0,
        readDiffusion: !!v.readDiffusion,
        last: v.last ?? null,
        pendingRead: v.pendingRead ?? 0,
        serverReadSeq: v.serverReadSeq ?? 0,
        lastTs: v.lastTs ?? 0,
        mentions: v.mentions ?? 0,
        pinned: !!v.pinned,
        muted: !!v.muted,
      });
    }
    for (const [conv, list] of Object.entries(s.recent ?? {})) {
      if (!Array.isArray(list)) continue;
      this._recent.set(conv, list);
      for (const m of list) this._seen.add(m.mid);
    }
  }

  /** @param {string} level @param {string} msg @param {any} [data] */
  _log(level, msg, data) {
    this.opts.log?.(level, msg, data);
  }
}
