/**
 * The browser's WebCrypto provider passes every test vector in real Chromium: vector-page.ts
 * is bundled with Vite, served from 127.0.0.1 (a secure context) and run in headless Chromium.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type StaticServer, serveStatic } from '../support/chromium.ts';
import { loadVectors } from '../support/load-vectors.ts';
import type { VectorPageReport } from './vector-page.ts';

const ENTRY = fileURLToPath(new URL('./vector-page.ts', import.meta.url));

describe('WebCrypto provider in Chromium (test vectors)', () => {
  let tempDir: string | undefined;
  let server: StaticServer | undefined;
  let browser: Browser | undefined;
  let report: VectorPageReport;

  beforeAll(async () => {
    tempDir = await mkdtemp(join(tmpdir(), 'pilepass-vector-page-'));
    const outDir = join(tempDir, 'dist');
    await build({
      configFile: false,
      root: tempDir,
      logLevel: 'warn',
      publicDir: false,
      build: {
        outDir,
        emptyOutDir: true,
        minify: false,
        sourcemap: true,
        lib: { entry: ENTRY, formats: ['es'], fileName: () => 'vector-page.js' },
      },
    });
    await writeFile(
      join(outDir, 'index.html'),
      '<!doctype html>\n<meta charset="utf-8">\n<title>PilePass vectors</title>\n' +
        '<script type="module" src="./vector-page.js"></script>\n',
    );
    server = await serveStatic(outDir);
    browser = await launchChromium();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(server.url);
    await page
      .waitForFunction(() => typeof window.runVectorChecks === 'function', null, { timeout: 30_000 })
      .catch((err) => {
        throw new Error(`vector page did not load: ${errors.join('; ') || String(err)}`);
      });
    report = await page.evaluate((v) => window.runVectorChecks(v), loadVectors());
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  });

  it('runs in Chromium in a secure context', () => {
    expect(report.userAgent).toContain('Chrome');
    expect(report.secureContext).toBe(true);
  });

  it('passes every vector check', () => {
    expect(report.results.length).toBeGreaterThanOrEqual(15);
    const failed = report.results.filter((r) => !r.ok);
    expect(failed).toEqual([]);
  });

  it('generates non-extractable signing keys (PKCS#8 export rejects)', () => {
    expect(report.nonExtractable, report.nonExtractableDetail).toBe(true);
  });
});
