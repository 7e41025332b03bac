// @ts-check
/** An error answered by the REST API ({code, message}) or a network failure. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 for network failures
   * @param {string} code e.g. USERNAME_TAKEN, BAD_CREDENTIALS, NOT_FOUND, NETWORK
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @typedef {{id: string, username: string, displayName: string}} User
 * @typedef {{token: string, userId: string, expiresAt: string|number, sessionExpiresAt?: number}} Session
 * @typedef {{conv: string, lastSeq: number, readSeq: number, unread: number, lastTs?: number, mentions?: number, pinned?: boolean, muted?: boolean, last?: {seq: number, from: string, kind: string, preview: string, ts: number}}} ConversationInfo
 * @typedef {{id: string, name: string, owner?: string, members?: string[], joinPolicy?: 'invite'|'request'|'open', muteAll?: boolean, remark?: string, [k: string]: any}} Group
 * @typedef {{id: string, groupId: string, userId: string, message: string, status: 'pending'|'accepted'|'declined', createdAt: number, decidedBy?: string, decidedAt?: number}} JoinRequest
 */

/** Client of imkube's REST API under /api/v1. */
export class RestClient {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl] origin or prefix, e.g. "http://127.0.0.1:8080" ("" = same origin)
   * @param {string} [opts.token] bearer token (set by login())
   * @param {typeof fetch} [opts.fetch]
   */
  constructor(opts = {}) {
    this.baseUrl = (opts.baseUrl ?? '').replace(/\/$/, '');
    this.token = opts.token ?? '';
    this._fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * @param {string} method
   * @param {string} path below /api/v1
   * @param {any} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await this._fetch(`${this.baseUrl}/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, 'NETWORK', `cannot reach the server: ${err instanceof Error ? err.message : err}`);
    }
    const text = await res.text();
    let data;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (!res.ok) {
      throw new ApiError(res.status, data?.code ?? `HTTP_${res.status}`, data?.message ?? text.slice(0, 200));
    }
    return data;
  }

  /** @param {{username: string, password: string, displayName?: string}} u @returns {Promise<User>} */
  register(u) {
    return this.request('POST', '/users', { displayName: u.username, ...u });
  }

  /**
   * Logs in and keeps the token for later calls.
   * @param {{username: string, password: string, device?: string}} creds (device: a name for listSessions())
   * @returns {Promise<Session>}
   */
  async login(creds) {
    const s = await this.request('POST', '/sessions', creds);
    this.token = s.token;
    return s;
  }

  /**
   * Exchanges the current (not yet expired) token for the next one of its
   * session and keeps it; the old token stops working. Rejects with status
   * 401 when the session has ended (log in again).
   * @returns {Promise<Session>}
   */
  async refresh() {
    const s = await this.request('POST', '/sessions/refresh');
    this.token = s.token;
    return s;
  }

  /** @returns {Promise<User & {dmPolicy: 'anyone'|'friends'}>} */
  me() {
    return this.request('GET', '/users/me');
  }

  /**
   * Changes your display name and/or who may message you.
   * @param {{displayName?: string, dmPolicy?: 'anyone'|'friends'}} patch
   * @returns {Promise<User & {dmPolicy: 'anyone'|'friends'}>}
   */
  updateMe(patch) {
    return this.request('PATCH', '/users/me', patch);
  }

  /**
   * Ends this session: the token stops working everywhere (its WebSockets
   * get kicked{reason:"logged_out"}). The client forgets the token.
   * @returns {Promise<void>}
   */
  async logout() {
    await this.request('POST', '/sessions/logout');
    this.token = '';
  }

  /**
   * Changes the password; every other session is signed out (their
   * WebSockets get kicked{reason:"password_changed"}); this one stays.
   * @param {string} current
   * @param {string} next
   * @returns {Promise<void>}
   */
  async changePassword(current, next) {
    await this.request('POST', '/users/me/password', { current, new: next });
  }

  /**
   * Deletes the account (needs the password): every session ends, the
   * username is never given to anyone else, sent messages stay.
   * @param {string} password
   * @returns {Promise<void>}
   */
  async deleteAccount(password) {
    await this.request('DELETE', '/users/me', { password });
    this.token = '';
  }

  /** @returns {Promise<{id: string, device: string, createdAt: number, lastUsedAt: number, expiresAt: number, current: boolean}[]>} your live sessions */
  async listSessions() {
    return (await this.request('GET', '/sessions')) ?? [];
  }

  /** Signs one of your sessions out. @param {string} id @returns {Promise<void>} */
  async revokeSession(id) {
    await this.request('DELETE', `/sessions/${encodeURIComponent(id)}`);
  }

  /**
   * @typedef {{id: string, from: string, to: string, message: string, status: 'pending'|'accepted'|'declined', createdAt: number}} FriendRequest
   * @typedef {{userId: string, username: string, displayName: string, remark: string, since: number}} Friend
   */

  /**
   * Asks userId to be friends. Rejects with 409 ALREADY_FRIENDS,
   * REQUEST_PENDING or LIMIT_REACHED, 403 BLOCKED.
   * @param {string} userId
   * @param {string} [message] at most 200 characters
   * @returns {Promise<FriendRequest>}
   */
  sendFriendRequest(userId, message) {
    return this.request('POST', '/friends/requests', message ? { userId, message } : { userId });
  }

  /**
   * @param {{direction?: 'in'|'out', status?: 'pending'|'accepted'|'declined'}} [q] default incoming, any status
   * @returns {Promise<FriendRequest[]>}
   */
  async friendRequests(q = {}) {
    const p = new URLSearchParams();
    if (q.direction) p.set('direction', q.direction);
    if (q.status) p.set('status', q.status);
    return (await this.request('GET', `/friends/requests?${p}`)) ?? [];
  }

  /** @param {string} id @returns {Promise<FriendRequest>} */
  acceptFriendRequest(id) {
    return this.request('POST', `/friends/requests/${encodeURIComponent(id)}/accept`);
  }

  /** @param {string} id @returns {Promise<FriendRequest>} */
  declineFriendRequest(id) {
    return this.request('POST', `/friends/requests/${encodeURIComponent(id)}/decline`);
  }

  /** @returns {Promise<Friend[]>} */
  async friends() {
    return (await this.request('GET', '/friends')) ?? [];
  }

  /** @param {string} userId @returns {Promise<void>} */
  async removeFriend(userId) {
    await this.request('DELETE', `/friends/${encodeURIComponent(userId)}`);
  }

  /** Your private note on a friend ("" clears it). @param {string} userId @param {string} remark @returns {Promise<void>} */
  async setRemark(userId, remark) {
    await this.request('PATCH', `/friends/${encodeURIComponent(userId)}`, { remark });
  }

  /** @param {string} userId @returns {Promise<void>} */
  async block(userId) {
    await this.request('PUT', `/blocks/${encodeURIComponent(userId)}`);
  }

  /** @param {string} userId @returns {Promise<void>} */
  async unblock(userId) {
    await this.request('DELETE', `/blocks/${encodeURIComponent(userId)}`);
  }

  /** @returns {Promise<{userId: string, username: string, displayName: string, createdAt: number}[]>} */
  async blocks() {
    return (await this.request('GET', '/blocks')) ?? [];
  }

  /** @param {string} username @returns {Promise<User>} rejects with status 404 when unknown */
  findUser(username) {
    return this.request('GET', `/users?username=${encodeURIComponent(username)}`);
  }

  /** @param {string} id @returns {Promise<User>} */
  getUser(id) {
    return this.request('GET', `/users/${encodeURIComponent(id)}`);
  }

  /** @returns {Promise<ConversationInfo[]>} */
  async conversations() {
    const r = await this.request('GET', '/conversations');
    return Array.isArray(r) ? r : (r?.items ?? []);
  }

  /**
   * Sets pinned and/or muted of your entry of conv.
   * @param {string} conv
   * @param {{pinned?: boolean, muted?: boolean}} patch
   * @returns {Promise<void>}
   */
  async patchConversation(conv, patch) {
    await this.request('PATCH', `/conversations/${encodeURIComponent(conv)}`, patch);
  }

  /**
   * @param {string} conv
   * @param {{fromSeq?: number, beforeSeq?: number, limit?: number}} [q]
   * @returns {Promise<{items: any[], more: boolean}>}
   */
  messages(conv, q = {}) {
    const p = new URLSearchParams();
    if (q.fromSeq != null) p.set('fromSeq', String(q.fromSeq));
    if (q.beforeSeq != null) p.set('beforeSeq', String(q.beforeSeq));
    if (q.limit != null) p.set('limit', String(q.limit));
    return this.request('GET', `/conversations/${encodeURIComponent(conv)}/messages?${p}`);
  }

  /** @param {{name: string, members: string[]}} g @returns {Promise<Group>} */
  createGroup(g) {
    return this.request('POST', '/groups', g);
  }

  /** @param {string} id @returns {Promise<Group>} */
  getGroup(id) {
    return this.request('GET', `/groups/${encodeURIComponent(id)}`);
  }

  /** @returns {Promise<Group[]>} */
  async groups() {
    const r = await this.request('GET', '/groups');
    return Array.isArray(r) ? r : (r?.items ?? []);
  }

  /** @param {string} id @param {string[]} userIds */
  addMembers(id, userIds) {
    return this.request('POST', `/groups/${encodeURIComponent(id)}/members`, { userIds });
  }

  /** @param {string} id @param {string} userId */
  removeMember(id, userId) {
    return this.request('DELETE', `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }

  /** @param {string} id @param {{name?: string, [k: string]: any}} patch */
  updateGroup(id, patch) {
    return this.request('PATCH', `/groups/${encodeURIComponent(id)}`, patch);
  }

  /**
   * @param {string} id
   * @param {string} userId
   * @param {{role?: string, mutedUntil?: string|number, nickname?: string}} patch
   */
  updateMember(id, userId, patch) {
    return this.request('PATCH', `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`, patch);
  }

  /** @param {string} id */
  deleteGroup(id) {
    return this.request('DELETE', `/groups/${encodeURIComponent(id)}`);
  }

  /**
   * Asks to join a group whose joinPolicy is "request".
   * @param {string} id
   * @param {string} [message]
   * @returns {Promise<JoinRequest>}
   */
  requestJoin(id, message) {
    return this.request('POST', `/groups/${encodeURIComponent(id)}/join-requests`, message ? { message } : {});
  }

  /**
   * The group's join requests (owner and admins only).
   * @param {string} id
   * @param {{status?: 'pending'|'accepted'|'declined'}} [q] default pending
   * @returns {Promise<JoinRequest[]>}
   */
  async listJoinRequests(id, q = {}) {
    const qs = q.status ? `?${new URLSearchParams({ status: q.status })}` : '';
    return (await this.request('GET', `/groups/${encodeURIComponent(id)}/join-requests${qs}`)) ?? [];
  }

  /** @param {string} id group @param {string} requestId @returns {Promise<JoinRequest>} */
  acceptJoinRequest(id, requestId) {
    return this.request('POST', `/groups/${encodeURIComponent(id)}/join-requests/${encodeURIComponent(requestId)}/accept`);
  }

  /** @param {string} id group @param {string} requestId @returns {Promise<JoinRequest>} */
  declineJoinRequest(id, requestId) {
    return this.request('POST', `/groups/${encodeURIComponent(id)}/join-requests/${encodeURIComponent(requestId)}/decline`);
  }

  /** Joins an open group (joinPolicy "open"). @param {string} id @returns {Promise<Group>} */
  joinGroup(id) {
    return this.request('POST', `/groups/${encodeURIComponent(id)}/join`);
  }

  /**
   * Sets your private remark for a group ("" clears it); only you see it.
   * @param {string} id @param {string} remark @returns {Promise<Group>}
   */
  setGroupRemark(id, remark) {
    return this.request('PATCH', `/groups/${encodeURIComponent(id)}/members/me`, { remark });
  }

  /**
   * Asks for a presigned upload (POST /api/v1/uploads).
   * @param {{kind: string, contentType: string, size: number, name: string}} req
   * @returns {Promise<{objectKey: string, uploadUrl: string, method: string, headers: Record<string, string>, expiresAt: number}>}
   */
  createUpload(req) {
    return this.request('POST', '/uploads', req);
  }

  /**
   * A short-lived URL of an object (or its thumbnail) for <img src> or a
   * download link: GET /api/v1/media/{objectKey} answered as JSON.
   * @param {string} objectKey
   * @param {{thumb?: boolean}} [opts]
   * @returns {Promise<string>}
   */
  async mediaUrl(objectKey, opts = {}) {
    const path = '/media/' + objectKey.split('/').map(encodeURIComponent).join('/') + (opts.thumb ? '?thumb=1' : '');
    const res = await this.request('GET', path);
    return res.url;
  }

  /**
   * Who has read message seq of conv (from the members' read cursors).
   * @param {string} conv
   * @param {number} seq
   * @returns {Promise<{readCount: number, unreadCount: number, readers?: string[]}>}
   */
  reads(conv, seq) {
    return this.request('GET', `/conversations/${encodeURIComponent(conv)}/reads?seq=${encodeURIComponent(String(seq))}`);
  }

  /**
   * Online state of users you share a conversation with (at most 200).
   * @param {string[]} users
   * @returns {Promise<{user: string, online: boolean, lastSeen: number}[]>}
   */
  async presence(users) {
    const r = await this.request('GET', `/presence?users=${users.map(encodeURIComponent).join(',')}`);
    return r?.items ?? [];
  }
}
