/**
 * Real Chromium (Debian's /usr/bin/chromium driven by playwright-core) for the browser tests,
 * `npm start`'s virtual phone and `npm run demo`, and a static server for built test pages.
 * Node only.
 */

import { existsSync } from 'node:fs';
import { type Browser, chromium, type LaunchOptions } from 'playwright-core';
import { type PwaServer, startPwaServer } from './pwa-server.ts';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-blink-features=WebBluetooth',
];

/** Launches headless Chromium; `options` override the defaults (extra `args` are appended). */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}; install it with \`bash scripts/system-deps.sh browser\` (as root)`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    ...options,
    args: [...CHROMIUM_ARGS, ...(options.args ?? [])],
  });
}

export type StaticServer = PwaServer;

/**
 * Serves `dir` on 127.0.0.1 with an ephemeral port (a secure context, as WebCrypto needs),
 * without the app's CSP or a cloud: the PWA server (pwa-server.ts) with test pages' defaults.
 */
export function serveStatic(dir: string): Promise<StaticServer> {
  return startPwaServer({ root: dir, contentSecurityPolicy: false });
}
