// @ts-check
/** A minimal event emitter that works the same in browsers and Node. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }

  /**
   * Subscribes fn to event name and returns a function that unsubscribes it.
   * @param {string} name
   * @param {(arg: any) => void} fn
   * @returns {() => void}
   */
  on(name, fn) {
    let set = this._handlers.get(name);
    if (!set) {
      set = new Set();
      this._handlers.set(name, set);
    }
    set.add(fn);
    return () => this.off(name, fn);
  }

  /**
   * @param {string} name
   * @param {(arg: any) => void} fn
   */
  off(name, fn) {
    this._handlers.get(name)?.delete(fn);
  }

  /**
   * Calls every handler of name; a throwing handler does not stop the others.
   * @param {string} name
   * @param {any} [arg]
   */
  emit(name, arg) {
    const set = this._handlers.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (err) {
        if (name !== 'handler_error') this.emit('handler_error', { event: name, error: err });
      }
    }
  }
}
