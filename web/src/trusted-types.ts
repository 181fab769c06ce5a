/**
 * The page runs under `require-trusted-types-for 'script'`. Svelte brings its own policy for
 * its templates; the one other sink the app feeds is `navigator.serviceWorker.register`,
 * which sw-register.ts calls with a plain string. A narrow default policy
 * accepts exactly the service worker's same-origin URL and nothing else (no HTML, no script).
 * @module
 */

const SERVICE_WORKER_PATH = '/sw.js';

interface TrustedTypePolicyFactoryLike {
  createPolicy(name: string, rules: { createScriptURL?: (input: string) => string }): unknown;
}

export function installTrustedTypesPolicy(): void {
  const factory = (globalThis as { trustedTypes?: TrustedTypePolicyFactoryLike }).trustedTypes;
  if (!factory) return;
  factory.createPolicy('default', {
    createScriptURL(input: string): string {
      const url = new URL(input, location.href);
      if (url.origin === location.origin && url.pathname === SERVICE_WORKER_PATH && url.search === '') {
        return url.href;
      }
      throw new TypeError(`Trusted Types: script URL refused: ${input}`);
    },
  });
}
