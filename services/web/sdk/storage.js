// @ts-check
/**
 * The persistence hook: the SDK stores its cursors and recent messages through
 * an object with async get/set. Values are plain JSON-able objects.
 * @typedef {object} Storage
 * @property {(key: string) => Promise<any> | any} get returns undefined when absent
 * @property {(key: string, value: any) => Promise<void> | void} set
 */

/** Keeps state in memory (the default: nothing survives a reload). */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.map = new Map();
  }
  /** @param {string} key */
  async get(key) {
    const v = this.map.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }
  /** @param {string} key @param {any} value */
  async set(key, value) {
    this.map.set(key, JSON.stringify(value));
  }
}

/** Keeps state in window.localStorage (or any object with getItem/setItem). */
export class LocalStorageStorage {
  /** @param {{getItem(k: string): string|null, setItem(k: string, v: string): void}} [ls] */
  constructor(ls) {
    this.ls = ls ?? globalThis.localStorage;
  }
  /** @param {string} key */
  async get(key) {
    const v = this.ls.getItem(key);
    if (v == null) return undefined;
    try {
      return JSON.parse(v);
    } catch {
      return undefined;
    }
  }
  /** @param {string} key @param {any} value */
  async set(key, value) {
    this.ls.setItem(key, JSON.stringify(value));
  }
}

/** Keeps state in IndexedDB (browsers): one object store, values as structured clones. */
export class IndexedDBStorage {
  /**
   * @param {string} [dbName]
   * @param {IDBFactory} [idb]
   */
  constructor(dbName = 'imkube', idb = globalThis.indexedDB) {
    this.dbName = dbName;
    this.idb = idb;
    /** @type {Promise<IDBDatabase> | null} */
    this._db = null;
  }

  /** @returns {Promise<IDBDatabase>} */
  _open() {
    if (!this._db) {
      this._db = new Promise((resolve, reject) => {
        const req = this.idb.open(this.dbName, 1);
        req.onupgradeneeded = () => req.result.createObjectStore('kv');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return this._db;
  }

  /**
   * @param {IDBTransactionMode} mode
   * @param {(store: IDBObjectStore) => IDBRequest} fn
   * @returns {Promise<any>}
   */
  async _run(mode, fn) {
    const db = await this._open();
    return new Promise((resolve, reject) => {
      const req = fn(db.transaction('kv', mode).objectStore('kv'));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  /** @param {string} key */
  get(key) {
    return this._run('readonly', (s) => s.get(key));
  }

  /** @param {string} key @param {any} value */
  async set(key, value) {
    // A JSON round trip drops what structured clone would keep but JSON would not (e.g. undefined).
    await this._run('readwrite', (s) => s.put(JSON.parse(JSON.stringify(value)), key));
  }
}
