/**
 * Background Sync of the receipts a phone carries: with the PWA's server (and so the cloud)
 * unreachable, an upload the page could not finish is queued by the service worker (Workbox
 * BackgroundSync, IndexedDB); when Chromium fires the sync event (dispatched here through the
 * devtools protocol, as the browser does when connectivity returns) the worker replays the
 * exact request to the cloud.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../scripts/station/chromium.ts';
import { type PwaServer, startPwaServer } from '../../scripts/station/pwa-server.ts';

describe('Background Sync of uploads (service worker)', () => {
  let dir: string;
  let outDir: string;
  let browser: Browser;
  let cloud: Server;
  let cloudUrl: string;
  const received: { path: string; body: string }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pilepass-bgsync-'));
    outDir = join(dir, 'dist');
    await build({
      configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
    // A stand-in for the cloud's upload routes: records what arrives, answers like the cloud.
    cloud = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        received.push({ path: req.url ?? '', body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'settled' }));
      });
    });
    await new Promise<void>((ok) => cloud.listen(0, '127.0.0.1', ok));
    cloudUrl = `http://127.0.0.1:${(cloud.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((ok) => cloud?.close(ok));
    rmSync(dir, { recursive: true, force: true });
  });

  it('queues an upload made while unreachable and replays it on the sync event', async () => {
    let server: PwaServer = await startPwaServer({ root: outDir, cloudUrl });
    const port = server.port;
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(server.url);
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    if (!(await page.evaluate(() => navigator.serviceWorker.controller !== null))) await page.reload();
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);

    await server.close(); // no server, no cloud: the fetch fails at the network
    const receipt = { receipt: 'ZmFrZS1yZWNlaXB0LWJ5dGVz' };
    const failed = await page.evaluate(async (body) => {
      try {
        await fetch('/v1/receipts', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return false;
      } catch {
        return true;
      }
    }, receipt);
    expect(failed).toBe(true);
    // The worker stores the request after the page has seen the failure: wait for it.
    const queued = await page.evaluate(async () => {
      const count = async () => {
        // Never create the database ourselves (Workbox creates it with its own schema).
        if (!(await indexedDB.databases()).some((d) => d.name === 'workbox-background-sync')) return 0;
        return new Promise<number>((ok, fail) => {
          const open = indexedDB.open('workbox-background-sync');
          open.onerror = () => fail(open.error);
          open.onsuccess = () => {
            const db = open.result;
            if (!db.objectStoreNames.contains('requests')) {
              db.close();
              return ok(0);
            }
            const request = db.transaction('requests').objectStore('requests').count();
            request.onsuccess = () => {
              db.close();
              ok(request.result);
            };
          };
        });
      };
      for (let i = 0; i < 100; i++) {
        const n = await count();
        if (n > 0) return n;
        await new Promise((r) => setTimeout(r, 50));
      }
      return count();
    });
    expect(queued).toBe(1);
    // (The app's own sync calls — stations and so on — also reach this stand-in; only uploads count.)
    const uploads = () => received.filter((r) => r.path === '/v1/receipts');
    expect(uploads()).toEqual([]);

    // Back online: the same origin (port) again, and the browser's sync event.
    server = await startPwaServer({ root: outDir, cloudUrl, port });
    const cdp = await context.newCDPSession(page);
    await cdp.send('ServiceWorker.enable');
    const registrationId = await new Promise<string>((ok) => {
      cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
        const r = e.registrations.find((x) => !x.isDeleted);
        if (r) ok(r.registrationId);
      });
    });
    await cdp.send('ServiceWorker.dispatchSyncEvent', {
      origin: server.url.replace(/\/$/, ''),
      registrationId,
      tag: 'workbox-background-sync:pilepass-uploads',
      lastChance: false,
    });
    for (let i = 0; i < 100 && uploads().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(uploads()).toEqual([{ path: '/v1/receipts', body: JSON.stringify(receipt) }]);
    await context.close();
    await server.close();
  });
});
