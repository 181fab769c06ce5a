/**
 * A tiny async mutex: runs critical sections one after another. The ledger's receipt chain
 * needs nextReceiptLink → sign (async) → closeSession without another append in between.
 * @module
 */

export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(critical: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(critical);
    this.#tail = result.catch(() => {});
    return result;
  }
}
