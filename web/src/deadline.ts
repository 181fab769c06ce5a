/**
 * A bound on radio work: Web Bluetooth operations (and the emulated ones in tests) can wait
 * forever, and a driver at a pile must get an answer instead.
 * @module
 */

/** `work`, or a rejection with `error()` after `ms`. */
export function withDeadline<T>(work: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
