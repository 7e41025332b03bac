// @ts-check
/**
 * Media messages (images, files, audio, video): upload straight to the
 * object store with the presigned URL of POST /api/v1/uploads, then send a
 * message whose body is {objectKey, name, size, contentType, ...}.
 * See api/protocol/PROTOCOL.md "Media messages".
 */
import { ApiError } from './rest.js';
import { backoffDelay } from './backoff.js';

/**
 * @typedef {object} MediaBody
 * @property {string} objectKey
 * @property {string} name
 * @property {number} size
 * @property {string} contentType
 * @property {number} [width]
 * @property {number} [height]
 * @property {number} [durationMs]
 * @property {string} [thumbKey]
 */

/**
 * @typedef {object} UploadProgress
 * @property {string} objectKey
 * @property {string} name
 * @property {number} loaded bytes sent so far
 * @property {number} total
 * @property {number} attempt from 1
 */

export const MEDIA_KINDS = ['image', 'file', 'audio', 'video'];

const INLINE_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

/**
 * The message kind for a content type: images the platform shows inline,
 * audio, video, or file.
 * @param {string} contentType
 */
export function kindOf(contentType) {
  const t = (contentType || '').toLowerCase();
  if (INLINE_IMAGES.includes(t)) return 'image';
  if (t.startsWith('audio/')) return 'audio';
  if (t.startsWith('video/')) return 'video';
  return 'file';
}

/**
 * The media body of a message, or null when it is not a media message.
 * @param {{kind: string, body: string}} m
 * @returns {MediaBody|null}
 */
export function mediaOf(m) {
  if (!m || !MEDIA_KINDS.includes(m.kind)) return null;
  try {
    const b = typeof m.body === 'string' ? JSON.parse(m.body) : m.body;
    return b && typeof b.objectKey === 'string' ? b : null;
  } catch {
    return null;
  }
}

/**
 * PUTs data to url, reporting progress. Browsers use XMLHttpRequest (upload
 * progress events); elsewhere fetch (progress at the start and the end).
 * @param {string} url
 * @param {Record<string, string>} headers
 * @param {Blob|Uint8Array|ArrayBuffer} data
 * @param {(loaded: number) => void} progress
 * @param {typeof fetch} fetchFn
 * @returns {Promise<void>}
 */
function put(url, headers, data, progress, fetchFn) {
  const XHR = globalThis.XMLHttpRequest;
  if (XHR) {
    return new Promise((resolve, reject) => {
      const x = new XHR();
      x.open('PUT', url);
      for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
      x.upload.onprogress = (/** @type {ProgressEvent} */ e) => progress(e.loaded);
      x.onload = () =>
        x.status >= 200 && x.status < 300
          ? resolve()
          : reject(new ApiError(x.status, `HTTP_${x.status}`, `upload refused: ${String(x.responseText).slice(0, 200)}`));
      x.onerror = () => reject(new ApiError(0, 'NETWORK', 'upload failed: network error'));
      x.send(/** @type {any} */ (data));
    });
  }
  progress(0);
  return fetchFn(url, { method: 'PUT', headers, body: /** @type {any} */ (data) }).then(async (res) => {
    if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, `upload refused: ${(await res.text()).slice(0, 200)}`);
  });
}

/**
 * Uploads file and sends it as a media message. Emits "upload" events
 * ({objectKey, name, loaded, total, attempt}) on the client and calls
 * opts.onProgress with the same; a failed upload is retried (a new upload
 * URL is asked for when the old one was refused or expired); then the
 * message is sent like client.send (retried until acked).
 * @param {import('./client.js').ImkubeClient} client
 * @param {Blob | {name: string, type: string, size: number, data: Uint8Array}} file a File/Blob, or {name, type, size, data} in Node
 * @param {{to: {user: string} | {group: string}, kind?: string, name?: string, contentType?: string,
 *   width?: number, height?: number, durationMs?: number, retries?: number, cmid?: string,
 *   onProgress?: (p: UploadProgress) => void}} opts
 * @returns {Promise<{ack: import('./client.js').Ack, body: MediaBody}>}
 */
export async function uploadAndSend(client, file, opts) {
  const rest = client.opts.rest;
  if (!rest) throw new TypeError('uploadAndSend: the client needs opts.rest (a RestClient) to request uploads');
  if (!opts || !opts.to) throw new TypeError('uploadAndSend: opts.to is required');
  const f = /** @type {any} */ (file);
  const name = opts.name ?? f.name ?? 'file';
  const contentType = opts.contentType ?? (f.type || 'application/octet-stream');
  const size = f.size ?? f.data?.byteLength;
  const data = f.data ?? f;
  const kind = opts.kind ?? kindOf(contentType);
  const retries = opts.retries ?? 3;
  const fetchFn = rest._fetch;
  let up = await rest.createUpload({ kind, contentType, size, name });
  for (let attempt = 1; ; attempt++) {
    /** @param {number} loaded */
    const report = (loaded) => {
      const p = { objectKey: up.objectKey, name, loaded, total: size, attempt };
      client.emit('upload', p);
      opts.onProgress?.(p);
    };
    try {
      await put(up.uploadUrl, up.headers, data, report, fetchFn);
      report(size);
      break;
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 0;
      if (attempt > retries || (status >= 400 && status < 500 && status !== 403 && status !== 408)) throw err;
      await new Promise((r) => setTimeout(r, backoffDelay(attempt - 1, { baseMs: 250, maxMs: 4000 }, client.random)));
      if (status === 403 || Date.now() > up.expiresAt - 5000) {
        up = await rest.createUpload({ kind, contentType, size, name });
      }
    }
  }
  /** @type {MediaBody} */
  const body = { objectKey: up.objectKey, name, size, contentType };
  if (opts.width) body.width = opts.width;
  if (opts.height) body.height = opts.height;
  if (opts.durationMs) body.durationMs = opts.durationMs;
  const ack = await client.send({ to: opts.to, kind, body: JSON.stringify(body), cmid: opts.cmid });
  return { ack, body };
}
