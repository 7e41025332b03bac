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
