/**
 * Scanning the code on a pile with the camera, in real Chromium: the camera is Chromium's fake
 * capture device playing a Y4M video of a QR code (made with qrencode), the app decodes it
 * (BarcodeDetector where the platform has one, our QR decoder loaded on demand otherwise — Linux
 * Chromium has none, so this runs the JS decoder) and picks station and connector.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../scripts/station/chromium.ts';
import { type PwaServer, startPwaServer } from '../../scripts/station/pwa-server.ts';

const WIDTH = 640;
const HEIGHT = 480;

/** The QR modules of `text` (true = dark), from qrencode's ASCII output (two chars a module). */
function qrModules(text: string): boolean[][] {
  const ascii = execFileSync('qrencode', ['-t', 'ASCII', '-m', '4', text], { encoding: 'utf8' });
  return ascii
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => Array.from({ length: line.length / 2 }, (_, i) => line[2 * i] === '#'));
}

/** A two-frame Y4M (4:2:0) video showing the code black on white, centred. */
function qrVideo(text: string): Buffer {
  const modules = qrModules(text);
  const scale = Math.floor(Math.min(WIDTH, HEIGHT) / modules.length);
  const size = modules.length * scale;
  const x0 = (WIDTH - size) >> 1;
  const y0 = (HEIGHT - size) >> 1;
  const luma = Buffer.alloc(WIDTH * HEIGHT, 235);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      if (modules[Math.floor(y / scale)]?.[Math.floor(x / scale)]) luma[(y0 + y) * WIDTH + x0 + x] = 16;
  const chroma = Buffer.alloc((WIDTH / 2) * (HEIGHT / 2), 128);
  const frame = Buffer.concat([Buffer.from('FRAME\n'), luma, chroma, chroma]);
  return Buffer.concat([
    Buffer.from(`YUV4MPEG2 W${WIDTH} H${HEIGHT} F10:1 Ip A1:1 C420jpeg\n`),
    frame,
    frame,
  ]);
}

describe('scan the code printed on the pile (camera)', () => {
  let dir: string;
  let server: PwaServer;
  let browser: Browser;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pilepass-scan-'));
    // Its own build: other test files rebuild web/dist while this one runs.
    const outDir = join(dir, 'dist');
    await build({
      configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
    const video = join(dir, 'pile-code.y4m');
    writeFileSync(video, qrVideo('https://app.pilepass.example/#/pile/gw-scan-01/2'));
    server = await startPwaServer({ root: outDir, cloudUrl: 'http://127.0.0.1:9' });
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [
        ...CHROMIUM_ARGS,
        '--use-fake-ui-for-media-stream',
        '--use-fake-device-for-media-stream',
        `--use-file-for-fake-video-capture=${video}`,
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('decodes the QR code from the camera and picks station and connector', async () => {
    const context = await browser.newContext({ locale: 'en' });
    await context.grantPermissions(['camera'], { origin: server.url });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    const hasBarcodeDetector = await page.evaluate(() => 'BarcodeDetector' in globalThis);
    await page.getByTestId('scan').click();
    await expect(page.getByTestId('pile').textContent({ timeout: 20_000 })).resolves.toBe(
      'Pile gw-scan-01, connector 2',
    );
    // On Linux Chromium there is no BarcodeDetector: the qr-decoder chunk did the decoding.
    if (!hasBarcodeDetector) {
      const scripts = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
      expect(scripts.some((name) => /qr-decoder-[\w-]+\.js$/.test(name))).toBe(true);
    }
    expect(errors).toEqual([]);
    await context.close();
  });

  it('a camera that is refused falls back to typing the code, with the reason shown', async () => {
    const context = await browser.newContext({ locale: 'en' });
    const page = await context.newPage();
    await page.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('denied', 'NotAllowedError'));
    });
    await page.goto(server.url);
    await page.getByTestId('scan').click();
    await expect(page.getByRole('alert').filter({ hasText: 'camera' }).textContent()).resolves.toBe(
      'The camera is not available. Type the code printed on the pile instead.',
    );
    await page.getByTestId('pile-code').fill('pilepass:gw-typed/1');
    await page.getByTestId('use-code').click();
    await expect(page.getByTestId('pile').textContent()).resolves.toBe('Pile gw-typed, connector 1');
    await context.close();
  });
});
