// @ts-check
/**
 * imkube JavaScript SDK (plain ES modules, browsers and Node 20+).
 *
 *   import { ImkubeClient, RestClient } from '/sdk/imkube.js';
 *
 * See docs/sdk.md for an example and the API.
 */
export { ImkubeClient, ImkubeError, directConv, groupConv, newId } from './client.js';
export { RestClient, ApiError } from './rest.js';
export { uploadAndSend, mediaOf, kindOf, MEDIA_KINDS } from './media.js';
export { MemoryStorage, LocalStorageStorage, IndexedDBStorage } from './storage.js';
export { backoffDelay } from './backoff.js';
export { Emitter } from './emitter.js';
