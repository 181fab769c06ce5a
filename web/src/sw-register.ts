/**
 * Registers the service worker and tells the app when a new version waits (the "Reload"
 * prompt) or when the first install made the app work offline. It replaces workbox-window
 * (2 KB gzip of the 60 KB budget) with the few calls the app needs; the generated worker
 * already answers `{ type: 'SKIP_WAITING' }`. Updates never apply by themselves: a driver in
 * the middle of a session keeps the version they started with.
 * @module
 */

export interface ServiceWorkerHooks {
  /** A new version is installed and waiting for the driver's "Reload". */
  onNeedRefresh(): void;
  /** The first version is installed: the app now starts offline. */
  onOfflineReady(): void;
}

/** Registers `/sw.js`; returns the function that applies a waiting update (and reloads). */
export function registerServiceWorker(hooks: ServiceWorkerHooks, url = '/sw.js'): (reload: boolean) => void {
  const container = typeof navigator === 'undefined' ? undefined : navigator.serviceWorker;
  if (!container) return () => {};
  let registration: ServiceWorkerRegistration | undefined;
  const follow = (worker: ServiceWorker | null) => {
    worker?.addEventListener('statechange', () => {
      if (worker.state !== 'installed') return;
      // With a controller this is an update; without one, the first install.
      if (container.controller) hooks.onNeedRefresh();
      else hooks.onOfflineReady();
    });
  };
  // The URL passes the page's Trusted Types default policy (trusted-types.ts).
  container
    .register(url, { scope: '/' })
    .then((r) => {
      registration = r;
      if (r.waiting && container.controller) hooks.onNeedRefresh();
      follow(r.installing);
      r.addEventListener('updatefound', () => follow(r.installing));
    })
    .catch(() => {
      // No worker (private mode, blocked): the app still works online.
    });
  return (reload) => {
    const waiting = registration?.waiting;
    if (!waiting) return;
    if (reload) container.addEventListener('controllerchange', () => location.reload(), { once: true });
    waiting.postMessage({ type: 'SKIP_WAITING' });
  };
}
