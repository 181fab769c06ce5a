/**
 * The production PWA in real Chromium: built with the repo's vite.config.ts, served from
 * 127.0.0.1, opened in a persistent context (installability checks are only clean there).
 * Asserts the app renders, the service worker registers, Chromium reports no installability
 * errors, the CSP stops an injected inline script, the no-Web-Bluetooth message shows, axe-core
 * finds no accessibility violation on any screen in either language, and the app starts from
 * the service worker with its server gone.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PwaServer, startPwaServer } from '../../scripts/station/pwa-server.ts';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../support/chromium.ts';

const CONFIG = fileURLToPath(new URL('../../vite.config.ts', import.meta.url));

declare global {
  interface Window {
    __pwned?: number;
    trustedTypes?: {
      createPolicy(
        name: string,
        rules: { createScript(input: string): string },
      ): { createScript(input: string): unknown };
    };
  }
}

describe('driver PWA (production build) in Chromium', () => {
  let tempDir: string | undefined;
  let outDir: string;
  let server: PwaServer | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const cspReports: string[] = [];

  beforeAll(async () => {
    tempDir = await mkdtemp(join(tmpdir(), 'pilepass-pwa-'));
    outDir = join(tempDir, 'dist');
    await build({ configFile: CONFIG, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    // The production headers (CSP included) and a cloud that is not there: the app copes.
    server = await startPwaServer({ root: outDir, cloudUrl: 'http://127.0.0.1:9' });
    context = await chromium.launchPersistentContext(join(tempDir, 'profile'), {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (/Content Security Policy|Trusted Type/i.test(msg.text())) cspReports.push(msg.text());
    });
    await page.goto(server.url);
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  });

  it('emits no inline script and links the manifest', async () => {
    const html = await readFile(join(outDir, 'index.html'), 'utf8');
    expect(html).toContain("script-src 'self'");
    expect(html).toMatch(/<link rel="manifest" href="\/manifest\.webmanifest"/);
    for (const [, attrs, body] of html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(attrs).toMatch(/\bsrc=/);
      expect(body?.trim()).toBe('');
    }
    const manifest = JSON.parse(await readFile(join(outDir, 'manifest.webmanifest'), 'utf8'));
    expect(manifest).toMatchObject({ name: 'PilePass', display: 'standalone', start_url: '/' });
    expect(
      manifest.icons.map((i: { sizes: string; purpose?: string }) => `${i.sizes}:${i.purpose ?? 'any'}`),
    ).toEqual(['192x192:any', '512x512:any', '512x512:maskable']);
  });

  it('renders the app under its own CSP', async () => {
    await expect(page.getByTestId('app-title').textContent({ timeout: 15_000 })).resolves.toBe('PilePass');
    await expect(page.title()).resolves.toBe('PilePass');
    expect(pageErrors).toEqual([]);
    expect(cspReports).toEqual([]);
  });

  it('registers a service worker', async () => {
    const scope = await page.evaluate(() =>
      Promise.race([
        navigator.serviceWorker.ready.then((r) => r.scope),
        new Promise<string>((r) => setTimeout(() => r('timed out'), 15_000)),
      ]),
    );
    expect(scope).toBe(server!.url);
  });

  it('is installable (no installability errors)', async () => {
    const cdp = await context!.newCDPSession(page);
    // The manifest and worker settle asynchronously; ask until Chromium has an answer.
    let errors: unknown[] = [];
    for (let i = 0; i < 20; i++) {
      ({ installabilityErrors: errors } = await cdp.send('Page.getInstallabilityErrors'));
      if (errors.length === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(errors).toEqual([]);
    await cdp.detach();

    // Control: a page with no manifest does report errors, so the empty list above means something.
    // (Another origin, and an image: on this one the service worker — and the server — answer
    // every app route with the app.)
    const bare = await context!.newPage();
    await bare.goto(`${server!.url.replace('127.0.0.1', 'localhost')}icons/icon-192.png`);
    const bareCdp = await context!.newCDPSession(bare);
    const { installabilityErrors } = await bareCdp.send('Page.getInstallabilityErrors');
    expect(installabilityErrors.map((e) => e.errorId)).toContain('no-manifest');
    await bare.close();
  });

  it('refuses injected inline scripts (Trusted Types and script-src)', async () => {
    const result = await page.evaluate(async () => {
      const violations: string[] = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(e.effectiveDirective));
      let innerHtmlThrew = false;
      try {
        const div = document.createElement('div');
        div.innerHTML = '<img src="x" onerror="window.__pwned=1"><script>window.__pwned=1</script>';
        document.body.append(div);
      } catch {
        innerHtmlThrew = true; // require-trusted-types-for 'script'
      }
      // With a Trusted Types policy the sink accepts the text, so script-src alone must stop it.
      const policy = window.trustedTypes!.createPolicy('pilepass-test', { createScript: (s: string) => s });
      const script = document.createElement('script');
      script.text = policy.createScript('window.__pwned = 1') as string;
      document.body.append(script);
      await new Promise((r) => setTimeout(r, 300));
      return { innerHtmlThrew, pwned: window.__pwned, violations };
    });
    expect(result.innerHtmlThrew).toBe(true);
    expect(result.pwned).toBeUndefined();
    expect(result.violations).toContain('script-src-elem');
  });

  it('switches to Chinese and shows the no-Web-Bluetooth message', async () => {
    const second = await context!.newPage();
    await second.addInitScript(() => {
      delete (Navigator.prototype as { bluetooth?: unknown }).bluetooth;
    });
    await second.goto(server!.url);
    await second.getByTestId('language').selectOption('zh-CN');
    await expect(second.getByTestId('tab-charge').textContent()).resolves.toContain('充电');
    const message = await second.getByTestId('no-bluetooth').textContent();
    expect(message).toContain('Web Bluetooth');
    expect(message).toContain('Bluefy');
    expect(await second.evaluate(() => localStorage.getItem('pilepass.lang'))).toBe('zh-CN');
    await second.close();
  });

  it.each(['en', 'zh-CN'])(
    'has no accessibility violations on any screen (axe-core, %s)',
    async (language) => {
      const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
      const third = await context!.newPage();
      await third.goto(server!.url);
      await third.getByTestId('language').selectOption(language);
      // The page's CSP forbids inline script, so axe goes in through the devtools protocol.
      const cdp = await context!.newCDPSession(third);
      await cdp.send('Runtime.evaluate', { expression: axeSource });
      for (const tab of ['charge', 'stations', 'vouchers', 'wallet', 'receipts']) {
        await third.getByTestId(`tab-${tab}`).click();
        const { result } = await cdp.send('Runtime.evaluate', {
          expression:
            'axe.run(document).then((r) => JSON.stringify({ passes: r.passes.length, violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) })) }))',
          awaitPromise: true,
        });
        const report = JSON.parse(result.value as string) as { passes: number; violations: unknown[] };
        expect(report.passes).toBeGreaterThan(5); // axe really checked this screen
        expect({ tab, violations: report.violations }).toEqual({ tab, violations: [] });
      }
      await cdp.detach();
      await third.close();
    },
  );

  it('starts offline from the service worker with the PWA server gone', async () => {
    const offline = await context!.newPage();
    await offline.goto(server!.url);
    await offline.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    if (!(await offline.evaluate(() => navigator.serviceWorker.controller !== null))) await offline.reload();
    await server!.close();
    server = undefined;
    await offline.reload();
    await expect(offline.getByTestId('app-title').textContent()).resolves.toBe('PilePass');
    await offline
      .getByTestId('online')
      .filter({ hasText: /Offline|离线/ })
      .waitFor();
    await offline.close();
  });
});
