/**
 * The production PWA in real Chromium: built with the repo's vite.config.ts, served from
 * 127.0.0.1, opened in a persistent context (installability checks are only clean there).
 * Asserts the app renders, the service worker registers, Chromium reports no installability
 * errors, the CSP stops an injected inline script, and the no-Web-Bluetooth message shows.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH, type StaticServer, serveStatic } from '../support/chromium.ts';

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
  let server: StaticServer | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const cspReports: string[] = [];

  beforeAll(async () => {
    tempDir = await mkdtemp(join(tmpdir(), 'pilepass-pwa-'));
    outDir = join(tempDir, 'dist');
    await build({ configFile: CONFIG, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    server = await serveStatic(outDir);
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
    // (Another origin: on this one the service worker answers every navigation with the app.)
    const bare = await context!.newPage();
    await bare.goto(`${server!.url.replace('127.0.0.1', 'localhost')}no-such-page`);
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
    await expect(second.getByTestId('tap').textContent()).resolves.toContain('点击开始充电');
    await second.getByTestId('tap').click();
    const message = await second.getByTestId('error').textContent();
    expect(message).toContain('Web Bluetooth');
    expect(message).toContain('Bluefy');
    expect(await second.evaluate(() => localStorage.getItem('pilepass.lang'))).toBe('zh-CN');
    await second.close();
  });
});
