/**
 * The Web Bluetooth bridge (scripts/virtual-ble/web-bluetooth-bridge.ts) end to end: real
 * Chromium's `navigator.bluetooth` ⇄ CDP ⇄ bridge ⇄ noble on a btvirt pty ⇄ the real
 * `pilepass-gateway` process (test/support/station.ts) with its sim pile. The page is a phone
 * made of production code (web-bluetooth-bridge-page.ts: the PWA's Web Bluetooth PhoneLink
 * and the shared PhoneSession on WebCrypto), bundled with Vite; the test only taps.
 *
 * Covered: a voucher switches the pile on, statuses arrive as notifications, a stop brings
 * the receipt — at ATT MTU 256 and 23 (long hello reads, long token writes); a cancelled
 * chooser is the link's 'cancelled' failure; after a reload the bridge rebuilds the emulation
 * and a tap works again; a link dropped mid-charge leaves the pile on and a re-attach shows
 * the running session; an impostor advertising the gateway's name is offered too, picked,
 * refused by the phone's hello check, and the real gateway picked next.
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlenoTransport } from '../../gateway/src/ble/bleno-transport.ts';
import type { GattHandler, LinkId } from '../../gateway/src/contracts.ts';
import {
  type BridgeMtu,
  startWebBluetoothBridge,
  type WebBluetoothBridge,
} from '../../scripts/virtual-ble/web-bluetooth-bridge.ts';
import { ErrorCode, SessionState, StopReason, toHex } from '../../shared/src/index.ts';
import { launchChromium, type StaticServer, serveStatic } from '../support/chromium.ts';
import { type Station, startStation } from '../support/station.ts';
import type { PhoneLogEntry, TapPlan } from './web-bluetooth-bridge-page.ts';

const ENTRY = fileURLToPath(new URL('./web-bluetooth-bridge-page.ts', import.meta.url));

let station: Station;
let tempDir: string | undefined;
let server: StaticServer | undefined;
let browser: Browser | undefined;
/** Emulation breaks when the browser's last context closes: this one stays open. */
let keeper: BrowserContext | undefined;
const timings: Record<string, number> = {};

interface Phone {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly bridge: WebBluetoothBridge;
  close(): Promise<void>;
}

async function openPhone(mtu: BridgeMtu, operationTimeoutMs?: number): Promise<Phone> {
  const context = await browser!.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(server!.url);
  await page
    .waitForFunction(() => window.bridgePhone !== undefined, null, { timeout: 15_000 })
    .catch((err) => {
      throw new Error(`test page did not load: ${errors.join('; ') || String(err)}`);
    });
  const t = performance.now();
  const bridge = await startWebBluetoothBridge({
    browser: browser!,
    context,
    page,
    uartPort: station.ptys[1]!,
    mtu,
    ...(operationTimeoutMs === undefined ? {} : { operationTimeoutMs }),
    ...(process.env.PILEPASS_BRIDGE_DEBUG ? { logger: consoleLogger } : {}),
  });
  timings[`bridge start (MTU ${mtu})`] = Math.round(performance.now() - t);
  return {
    context,
    page,
    bridge,
    async close() {
      await bridge.close();
      await context.close();
    },
  };
}

/** PILEPASS_BRIDGE_DEBUG=1 prints the bridge's log (every GATT operation). */
const consoleLogger = {
  debug: (fields: object, msg: string) => console.error(`[bridge] ${msg} ${JSON.stringify(fields)}`),
  info: (fields: object, msg: string) => console.error(`[bridge] ${msg} ${JSON.stringify(fields)}`),
  warn: (fields: object, msg: string) => console.error(`[bridge WARN] ${msg} ${JSON.stringify(fields)}`),
};

const phoneLog = (page: Page) => page.evaluate(() => window.bridgePhone.log);

/** Waits for a log entry (after the first `from` entries) matching `match`; returns it. */
async function waitForLog(
  page: Page,
  match: (e: PhoneLogEntry) => boolean,
  what: string,
  from = 0,
  timeoutMs = 15_000,
  failuresExpected = false,
): Promise<PhoneLogEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await phoneLog(page);
    const found = log.slice(from).find(match);
    if (found) return found;
    const failure = log
      .slice(from)
      .find((e) => e.kind === 'failure' || e.kind === 'rejected' || e.kind === 'error');
    if (failure && !failuresExpected && !match(failure))
      throw new Error(`${what}: the phone failed: ${JSON.stringify(failure)}`);
    if (Date.now() > deadline)
      throw new Error(`${what}: not seen within ${timeoutMs} ms; log: ${JSON.stringify(log)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function plan(connector: number | undefined, voucher?: Awaited<ReturnType<Station['issueVoucher']>>) {
  const v = voucher ?? (await station.issueVoucher({ connector: connector ?? 1 }));
  const armed: TapPlan = {
    voucherHex: toHex(v.voucher.bytes),
    devicePrivateKeyHex: toHex(v.devicePrivateKey),
    gatewayId: station.gatewayId,
    ...(connector === undefined ? {} : { connector }),
  };
  return { voucher: v, armed };
}

async function tap(page: Page, armed: TapPlan): Promise<number> {
  const from = (await phoneLog(page)).length;
  await page.evaluate((p) => window.bridgePhone.arm(p), armed);
  await page.click('#tap');
  return from;
}

/** How often the gateway logged `msg` so far. */
const gatewayLogged = (msg: string) => station.gatewayLog().split(`"msg":"${msg}"`).length - 1;

const contactor = async (connector: number) =>
  (await station.pileState()).connectors.find((c) => c.connector === connector)!;

const charging = (e: PhoneLogEntry) =>
  e.kind === 'status' && e.state === SessionState.CHARGING && (e.energyWh as number) > 0;

/** Token tap → pile ON → statuses → stop → receipt; returns the ms from click to pile ON. */
async function chargeAndStop(phone: Phone, connector: number): Promise<{ onMs: number; statuses: number }> {
  const { armed } = await plan(connector);
  const t = performance.now();
  const from = await tap(phone.page, armed);
  await waitForLog(phone.page, (e) => e.kind === 'status', 'first status', from);
  const onMs = Math.round(performance.now() - t);
  expect((await contactor(connector)).contactorOn).toBe(true);
  const first = await waitForLog(phone.page, charging, 'a CHARGING status with energy', from);
  expect(first.connector).toBe(connector);
  await phone.page.evaluate(() => window.bridgePhone.stop());
  const receipt = await waitForLog(phone.page, (e) => e.kind === 'receipt', 'receipt', from);
  expect(receipt).toMatchObject({ connector, stopReason: StopReason.DRIVER_REQUEST, session: first.session });
  expect(receipt.energyWh as number).toBeGreaterThan(0);
  expect((await contactor(connector)).contactorOn).toBe(false);
  const log = (await phoneLog(phone.page)).slice(from);
  return { onMs, statuses: log.filter((e) => e.kind === 'status').length };
}

describe('Web Bluetooth bridge: Chromium ⇄ CDP ⇄ noble ⇄ btvirt ⇄ the real gateway process', () => {
  beforeAll(async () => {
    const t = performance.now();
    tempDir = await mkdtemp(join(tmpdir(), 'pilepass-bridge-page-'));
    const outDir = join(tempDir, 'dist');
    const [started] = await Promise.all([
      startStation({ phones: 2, speed: 30 }),
      build({
        configFile: false,
        root: tempDir,
        logLevel: 'warn',
        publicDir: false,
        build: {
          outDir,
          emptyOutDir: true,
          minify: false,
          lib: { entry: ENTRY, formats: ['es'], fileName: () => 'phone.js' },
        },
      }),
    ]);
    station = started;
    await writeFile(
      join(outDir, 'index.html'),
      '<!doctype html>\n<meta charset="utf-8">\n<title>PilePass bridge phone</title>\n<body>\n' +
        '<script type="module" src="./phone.js"></script>\n',
    );
    server = await serveStatic(outDir);
    browser = await launchChromium();
    keeper = await browser.newContext();
    timings['station + page build + browser'] = Math.round(performance.now() - t);
  }, 180_000);

  afterAll(async () => {
    await keeper?.close().catch(() => {});
    await browser?.close();
    await server?.close();
    await station?.stop();
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
    console.info('web-bluetooth bridge timings (ms):', timings);
  }, 60_000);

  it('MTU 256: voucher → pile ON → status notifications → stop → receipt; close() releases everything', async () => {
    const phone = await openPhone(256);
    const disconnectsBefore = gatewayLogged('link disconnected');
    try {
      expect(phone.bridge.devices()).toEqual([
        expect.objectContaining({
          name: station.gatewayId,
          serviceUuids: [expect.stringMatching(/^7a1c0001-/)],
        }),
      ]);
      const { onMs, statuses } = await chargeAndStop(phone, 1);
      timings['MTU 256 click → pile ON'] = onMs;
      expect(statuses).toBeGreaterThanOrEqual(2);
      expect(phone.bridge.links()).toEqual([expect.objectContaining({ mtu: 256, pageConnected: true })]);
      const stats = phone.bridge.stats();
      expect(stats).toMatchObject({ connections: 1, discoveries: 1, failures: 0 });
      expect(stats.notifications).toBeGreaterThanOrEqual(statuses);
      expect(stats.bytesWritten).toBeGreaterThan(300); // the sealed token
      expect(phone.bridge.prompts()).toEqual([
        expect.objectContaining({
          answer: { type: 'selected', address: phone.bridge.devices()[0]!.address },
        }),
      ]);
    } finally {
      await phone.close();
    }
    // close() ended the link: the gateway saw the phone leave.
    await expect
      .poll(() => gatewayLogged('link disconnected'), { timeout: 5_000 })
      .toBe(disconnectsBefore + 1);
  });

  it('MTU 23: long hello read and long token write at the minimum MTU', async () => {
    const phone = await openPhone(23);
    try {
      const { onMs } = await chargeAndStop(phone, 2);
      timings['MTU 23 click → pile ON'] = onMs;
      expect(phone.bridge.links()).toEqual([expect.objectContaining({ mtu: 23 })]);
      expect(phone.bridge.stats().failures).toBe(0);
    } finally {
      await phone.close();
    }
  });

  describe('one phone page for the rest', () => {
    let phone: Phone;
    beforeAll(async () => {
      phone = await openPhone(256);
    }, 60_000);
    afterAll(async () => {
      await phone?.close();
    });

    it("a cancelled chooser is the link's 'cancelled' failure; after a reload a tap works again", async () => {
      phone.bridge.cancelNextChooser();
      const { armed } = await plan(1);
      let from = await tap(phone.page, armed);
      const failure = await waitForLog(phone.page, (e) => e.kind === 'failure', 'cancelled', from);
      expect(failure.failure).toBe('cancelled');
      expect(phone.bridge.prompts().at(-1)?.answer).toEqual({ type: 'cancelled', reason: 'asked to cancel' });
      expect(phone.bridge.links()).toEqual([]);

      // A reload kills Chromium's emulated adapter; the bridge rebuilds it.
      const rebuilt = phone.bridge.waitFor((e) => e.type === 'rebuilt');
      await phone.page.reload();
      timings['rebuild after reload'] = ((await rebuilt) as { ms: number }).ms;
      await phone.bridge.ready();
      await phone.page.waitForFunction(() => window.bridgePhone !== undefined);
      from = await tap(phone.page, armed);
      await waitForLog(phone.page, (e) => e.kind === 'status', 'status after the reload', from);
      await phone.page.evaluate(() => window.bridgePhone.stop());
      await waitForLog(phone.page, (e) => e.kind === 'receipt', 'receipt after the reload', from);
      phone.page.evaluate(() => window.bridgePhone.disconnect());
      await phone.bridge.waitFor((e) => e.type === 'disconnected' && e.by === 'page');
      expect(phone.bridge.links()).toEqual([]);
    });

    it('a gateway-side disconnect reaches the page after the rejection sent before it (expired voucher)', async () => {
      const now = Math.floor(Date.now() / 1000);
      const expired = await station.issueVoucher({
        connector: 1,
        issuedAt: now - 3 * 86_400,
        notBefore: now - 3 * 86_400,
        expiresAt: now - 2 * 86_400,
      });
      const { armed } = await plan(1, expired);
      const gone = phone.bridge.waitFor((e) => e.type === 'disconnected');
      const from = await tap(phone.page, armed);
      const rejected = await waitForLog(phone.page, (e) => e.kind === 'rejected', 'rejection', from);
      expect(rejected.code).toBe(ErrorCode.VOUCHER_EXPIRED);
      await waitForLog(
        phone.page,
        (e) => e.kind === 'disconnected',
        'disconnected at the page',
        from,
        5_000,
        true,
      );
      expect(await gone).toMatchObject({ type: 'disconnected', by: 'peripheral' });
      expect(await phone.page.evaluate(() => window.bridgePhone.connected())).toBe(false);
      expect(phone.bridge.links()).toEqual([]);
    });

    it('link dropped mid-charge: the pile stays on; a re-attach shows the running session, then stop → receipt', async () => {
      const { armed, voucher } = await plan(2);
      let from = await tap(phone.page, armed);
      const first = await waitForLog(phone.page, charging, 'charging', from);
      const session = first.session;

      await phone.bridge.dropLink();
      await waitForLog(phone.page, (e) => e.kind === 'disconnected', 'disconnected at the page', from);
      expect(await phone.page.evaluate(() => window.bridgePhone.connected())).toBe(false);
      await new Promise((r) => setTimeout(r, 500));
      expect((await contactor(2)).contactorOn).toBe(true);

      const attach = await plan(undefined, voucher);
      const reattachedBefore = gatewayLogged('phone re-attached to its session');
      from = await tap(phone.page, attach.armed);
      const status = await waitForLog(phone.page, (e) => e.kind === 'status', 'status after re-attach', from);
      expect(status).toMatchObject({ session, connector: 2 });
      expect(gatewayLogged('phone re-attached to its session')).toBe(reattachedBefore + 1);
      expect(phone.bridge.stats().connections).toBeGreaterThanOrEqual(2);
      await phone.page.evaluate(() => window.bridgePhone.stop());
      const receipt = await waitForLog(
        phone.page,
        (e) => e.kind === 'receipt',
        'receipt after re-attach',
        from,
      );
      expect(receipt).toMatchObject({ session, connector: 2, stopReason: StopReason.DRIVER_REQUEST });
      expect((await contactor(2)).contactorOn).toBe(false);
      phone.page.evaluate(() => window.bridgePhone.disconnect());
      await phone.bridge.waitFor((e) => e.type === 'disconnected');
    });

    it('an impostor with the same name is offered too; picked, its hello fails the check; the real gateway next', async () => {
      const realAddress = phone.bridge.devices()[0]!.address;
      const impostor = createBlenoTransport(
        { port: 'uart', path: station.ptys[2]! },
        { name: 'PilePass', gatewayId: station.gatewayId },
      );
      const handler = new ImpostorHandler();
      await impostor.start(handler);
      try {
        const found = await phone.bridge.scan({ minDevices: 2 });
        const impostorAddress = found.map((d) => d.address).find((a) => a !== realAddress)!;
        expect(found.map((d) => d.name)).toEqual([station.gatewayId, station.gatewayId]);

        phone.bridge.chooseNext({ address: impostorAddress });
        const { armed } = await plan(1);
        let from = await tap(phone.page, armed);
        const failure = await waitForLog(phone.page, (e) => e.kind === 'failure', 'hello check', from);
        expect(failure.failure).toBe('ProtocolError');
        expect(handler.helloReads).toBeGreaterThan(0);
        expect(phone.bridge.prompts().at(-1)).toMatchObject({
          listed: expect.arrayContaining([realAddress, impostorAddress]),
          answer: { type: 'selected', address: impostorAddress },
        });
        phone.page.evaluate(() => window.bridgePhone.disconnect());
        await phone.bridge.waitFor((e) => e.type === 'disconnected' && e.address === impostorAddress);

        phone.bridge.chooseNext({ address: realAddress });
        from = await tap(phone.page, armed);
        await waitForLog(phone.page, (e) => e.kind === 'status', 'status from the real gateway', from);
        await phone.page.evaluate(() => window.bridgePhone.stop());
        await waitForLog(phone.page, (e) => e.kind === 'receipt', 'receipt', from);
      } finally {
        await impostor.stop();
      }
    });
  });

  it('a peripheral that stops answering: the bridge times out and answers, the page fails instead of hanging', async () => {
    const phone = await openPhone(256, 1_000);
    // The gateway process frozen: the link layer (btvirt) still connects, ATT goes unanswered.
    process.kill(station.gatewayPid, 'SIGSTOP');
    try {
      const { armed } = await plan(1);
      const t = performance.now();
      const from = await tap(phone.page, armed);
      const failure = await waitForLog(
        phone.page,
        (e) => e.kind === 'failure',
        'failure',
        from,
        10_000,
        true,
      );
      timings['frozen gateway → page failure'] = Math.round(performance.now() - t);
      expect(failure.failure).toBe('connect-failed');
      expect(phone.bridge.stats().failures).toBeGreaterThan(0);
    } finally {
      process.kill(station.gatewayPid, 'SIGCONT');
      await phone.close();
    }
  });
});

/** A peripheral that advertises the gateway's name but holds no gateway key: its hello is noise. */
class ImpostorHandler implements GattHandler {
  readonly hello = new Uint8Array(randomBytes(180));
  helloReads = 0;
  onConnect(): void {}
  onMtu(): void {}
  onSubscribe(): void {}
  onUnsubscribe(): void {}
  async readHello(_link: LinkId, offset: number): Promise<Uint8Array> {
    this.helloReads++;
    return this.hello.subarray(offset);
  }
  async onWrite(): Promise<void> {}
  onDisconnect(): void {}
}
