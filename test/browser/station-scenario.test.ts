/**
 * The driver's PWA against the whole station, all real: the production build in Chromium, its
 * Web Bluetooth bridged (CDP ⇄ noble ⇄ BlueZ's emulated controller) to the gateway process
 * (bleno on `--ble uart:<pty>`), the sim pile process, and the cloud process (SQLite).
 *
 * - The scenario, in English and in Chinese (screenshots in test/artifacts/scenario/): register
 *   → top up → buy for pile P → offline (browser context, cloud and PWA server all down) →
 *   reload from the service worker → tap → pile ON at the sim pile → live status → stop →
 *   receipt → online → receipt uploaded → the wallet shows the refund of the unused hold.
 * - Rejections shown with the right message: chooser cancelled, wrong station (the pile code),
 *   wrong device (a clone advertising the same name with another key: "pick again" then the
 *   real one), link dropped mid-charge then re-attach, the voucher used twice (refused by the
 *   gateway, 208), an expired voucher.
 */

import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimPileProcess } from '../../gateway/src/pile/sim-pile-process.ts';
import { launchChromium } from '../../scripts/station/chromium.ts';
import { runDriverJourney, Scenario } from '../../scripts/station/scenario.ts';
import { buildWeb, DEMO, startWholeStation, type WholeStation } from '../../scripts/station/whole-station.ts';
import { startGatewayProcess } from '../../scripts/virtual-ble/gateway-process.ts';
import {
  startWebBluetoothBridge,
  type WebBluetoothBridge,
} from '../../scripts/virtual-ble/web-bluetooth-bridge.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { toHex } from '../../shared/src/index.ts';

const ARTIFACTS = join(import.meta.dirname, '../artifacts/scenario');
const money = (text: string) => Math.round(Number(text.replace(/[^\d.-]/g, '')) * 100);

let station: WholeStation;
let browser: Browser;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  buildWeb(true);
  station = await startWholeStation({
    dataDir: mkdtempSync(join(tmpdir(), 'pilepass-scenario-')),
    phones: 2,
  });
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await browser?.close();
  await station?.stop();
});

async function cloudVoucherOf(email: string, password: string) {
  const { token } = await station.api('/v1/sessions', { email, password });
  const auth = { authorization: `Bearer ${String(token)}` };
  const [wallet, vouchers] = await Promise.all([
    station.api('/v1/wallet', undefined, auth),
    station.api('/v1/vouchers', undefined, auth),
  ]);
  return { wallet, vouchers: vouchers.vouchers as Record<string, unknown>[] };
}

describe('the driver journey, offline at the station', () => {
  it.each(['en', 'zh-CN'] as const)(
    'register → buy → offline → tap → charge → stop → receipt → online → refund (%s)',
    async (language) => {
      const email = `scenario-${language}@pilepass.test`;
      const password = 'correct horse battery';
      const result = await runDriverJourney({
        browser,
        station,
        language,
        account: { email, password },
        topUp: '100',
        hold: '50',
        connector: 2,
        screenshotDir: join(ARTIFACTS, language),
      });
      const names = result.steps.map((s) => s.step);
      expect(names).toContain('go offline and reload');
      expect(names.indexOf('pile is on')).toBeGreaterThan(names.indexOf('go offline and reload'));
      expect(result.steps.every((s) => s.screenshot)).toBe(true);

      // The cloud's books agree with the screen: captured what the receipt charged, refunded the rest.
      const charged = money(result.charged);
      expect(charged).toBeGreaterThan(0);
      const { wallet, vouchers } = await cloudVoucherOf(email, password);
      expect(wallet).toEqual({ currency: 'CNY', balance: 10_000 - charged, held: 0 });
      expect(money(result.finalBalance)).toBe(10_000 - charged);
      expect(vouchers).toHaveLength(1);
      expect(vouchers[0]).toMatchObject({ state: 'settled', captured: charged, refunded: 5_000 - charged });
    },
    180_000,
  );
});

describe('rejections at the station, each with its message', () => {
  let context: BrowserContext;
  let page: Page;
  let bridge: WebBluetoothBridge;
  let s: Scenario;
  let realAddress: string;
  let cloneAddress: string;

  beforeAll(async () => {
    // A clone: same name and gateway id, its own key (a copied SD card with a new key, or a
    // fake station). Its own sim pile, so its start-up recovery can never touch the real pile.
    const dir = mkdtempSync(join(tmpdir(), 'pilepass-clone-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'gateway');
    mkdirSync(dataDir);
    cpSync(join(station.dataDir, 'gateway', 'root-key.json'), join(dataDir, 'root-key.json'));
    writeFileSync(
      join(dataDir, 'gateway-key.json'),
      JSON.stringify({ privateKey: toHex(nodeCrypto.randomBytes(32)) }),
      { mode: 0o600 },
    );
    const pile = await startSimPileProcess({ dir, connectors: [1, 2], watchPid: process.pid });
    cleanups.push(() => pile.stop());

    context = await browser.newContext({ locale: 'en' });
    page = await context.newPage();
    bridge = await startWebBluetoothBridge({ browser, context, page, uartPort: station.phonePtys[0]! });
    cleanups.push(() => context.close());
    cleanups.push(() => bridge.close());
    [realAddress] = (await bridge.scan({ minDevices: 1 })).map((d) => d.address) as [string];

    const clone = await startGatewayProcess({
      blePty: station.phonePtys[1]!,
      pile: `sim:${pile.socketPath}`,
      gatewayId: DEMO.gatewayId,
      dataDir,
      connectors: [1, 2],
      logLevel: 'info',
    });
    cleanups.push(() => clone.stop());
    const both = await bridge.scan({ minDevices: 2 });
    cloneAddress = both.map((d) => d.address).find((a) => a !== realAddress)!;
    expect(both.every((d) => d.name === DEMO.gatewayId)).toBe(true);

    s = new Scenario({ page, context, station, screenshotDir: join(ARTIFACTS, 'rejections') });
    await s.open();
    await s.register('rejections@pilepass.test', 'correct horse battery');
    await s.topUp('200', /200/);
    await s.buy(station.gatewayId, 1, '20');
    await bridge.ready();
  }, 180_000);

  const errorText = () => page.getByTestId('error-text').textContent();

  it('chooser cancelled: says no station was chosen, offers to pick again', async () => {
    bridge.cancelNextChooser();
    await s.step('chooser cancelled', async () => {
      await page.getByTestId('tab-charge').click();
      await page.getByTestId('tap').click();
      await page.getByTestId('error').waitFor();
    });
    expect(await errorText()).toBe('No charging station was chosen.');
    expect(await page.getByTestId('pick-again').isVisible()).toBe(true);
  });

  it('wrong station: the scanned pile belongs to another station', async () => {
    await s.step('wrong station', async () => {
      await page.getByTestId('pile-code').fill('pilepass:gw-elsewhere/1');
      await page.getByTestId('use-code').click();
      await page.getByTestId('tap').click();
      await page.getByTestId('error').filter({ hasText: 'another station' }).waitFor();
    });
    expect(await errorText()).toBe(
      'This voucher is for another station. Choose a voucher for this pile or buy a new one.',
    );
    expect(bridge.stats().connections).toBe(0); // caught before any radio
    await page.getByTestId('pile-code').fill(`pilepass:${station.gatewayId}/1`);
    await page.getByTestId('use-code').click();
  });

  it('wrong device: a clone is refused before the token goes out; pick again reaches the real gateway', async () => {
    bridge.chooseNext({ address: cloneAddress });
    await s.step('wrong device', async () => {
      await page.getByTestId('tap').click();
      await page.getByTestId('error').filter({ hasText: 'not the station' }).waitFor();
    });
    expect(await errorText()).toContain('That is not the station your voucher is for');
    expect(bridge.stats().bytesWritten).toBe(0); // the voucher never reached the clone
    bridge.chooseNext({ address: realAddress });
    await s.step('pick again', async () => {
      await page.getByTestId('pick-again').click();
      await page.getByTestId('charging').waitFor();
    });
    expect((await station.pile.read(1)).contactorOn).toBe(true);
  });

  it('link dropped mid-charge: charging goes on; re-attach shows it, stops it, gets the receipt', async () => {
    await s.step('link dropped', async () => {
      await bridge.dropLink();
      await page.getByTestId('detached').waitFor();
    });
    expect((await station.pile.read(1)).contactorOn).toBe(true);
    await s.step('re-attach', async () => {
      await page.getByTestId('reconnect').click();
      await page.getByTestId('stop').waitFor();
    });
    await s.stop();
    expect((await station.pile.read(1)).contactorOn).toBe(false);
  });

  it('the same voucher used twice is refused by the gateway (208)', async () => {
    // A restored backup or a second phone holding the used voucher: the phone thinks it is ready.
    // First let the app finish its own upload of the last receipt, then cut the network, so the
    // cloud (which knows the voucher was settled) cannot correct the phone.
    await page.getByTestId('pending').filter({ hasText: 'Everything uploaded' }).waitFor();
    await context.setOffline(true);
    await page.evaluate(async () => {
      const db = await new Promise<IDBDatabase>((ok, fail) => {
        const r = indexedDB.open('pilepass');
        r.onsuccess = () => ok(r.result);
        r.onerror = () => fail(r.error);
      });
      const tx = db.transaction('vouchers', 'readwrite');
      const store = tx.objectStore('vouchers');
      const all = await new Promise<Record<string, unknown>[]>((ok) => {
        const r = store.getAll();
        r.onsuccess = () => ok(r.result as Record<string, unknown>[]);
      });
      for (const v of all) store.put({ ...v, localState: 'ready', cloudState: 'issued' });
      await new Promise((ok) => {
        tx.oncomplete = ok;
      });
      db.close();
    });
    await page.reload();
    await bridge.ready();
    bridge.chooseNext({ address: realAddress });
    await s.step('voucher used twice', async () => {
      await page.getByTestId('tab-charge').click();
      await page.getByTestId('tap').click();
      await page.getByTestId('error').filter({ hasText: '208' }).waitFor();
    });
    expect(await errorText()).toMatch(/^Error 208: /);
    expect((await station.pile.read(1)).contactorOn).toBe(false);
    await context.setOffline(false);
  });

  it('an expired voucher is refused with its own message', async () => {
    await s.buy(station.gatewayId, 2, '20');
    // Eight days on (the demo cloud's vouchers live seven).
    await context.clock.install({ time: Date.now() + 8 * 86_400_000 });
    await page.reload();
    await bridge.ready();
    await s.step('expired voucher', async () => {
      await page.getByTestId('tab-vouchers').click();
      await page.locator('[data-testid="voucher"][data-status="expired"]').first().waitFor();
      await page.getByTestId('tab-charge').click();
      await page.getByTestId('no-voucher').waitFor();
    });
    expect(await page.getByTestId('no-voucher').textContent()).toBe(
      'This voucher has expired. Its hold will be returned; buy a new pre-deduction.',
    );
  });
});
