/**
 * The driver's journey through the PWA, step by step, as a person would click it: register,
 * top up, buy a pre-deduction for a pile, go offline (browser **and** cloud **and** PWA server),
 * reload from the service worker, tap to charge over Web Bluetooth, watch, stop, keep the
 * receipt, come back online, see the refund. Each step checks what the screen shows, times
 * itself and can save a screenshot. Used by the browser scenario test, `npm run demo`, and
 * `npm start` without a display. Node only (Playwright).
 * @module
 */

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  type BridgeLogger,
  type BridgeMtu,
  startWebBluetoothBridge,
} from '../virtual-ble/web-bluetooth-bridge.ts';
import type { WholeStation } from './whole-station.ts';

export interface ScenarioStep {
  readonly step: string;
  readonly ms: number;
  readonly screenshot?: string | undefined;
}

/** One step as `npm start` and `npm run demo` print it. */
export function formatStep(step: ScenarioStep): string {
  return `  ✓ ${step.step.padEnd(28)} ${String(step.ms).padStart(6)} ms`;
}

export interface ScenarioOptions {
  readonly page: Page;
  readonly context: BrowserContext;
  readonly station: WholeStation;
  /** Where to save one PNG per step (created); none when undefined. */
  readonly screenshotDir?: string | undefined;
  /** Prefix of the screenshot names (e.g. the language). */
  readonly prefix?: string;
  readonly onStep?: (step: ScenarioStep) => void;
  /** How long one step may take (default 30 s). */
  readonly stepTimeoutMs?: number;
}

export class Scenario {
  readonly steps: ScenarioStep[] = [];
  readonly #o: ScenarioOptions;
  #n = 0;

  constructor(options: ScenarioOptions) {
    this.#o = options;
    if (options.screenshotDir) mkdirSync(options.screenshotDir, { recursive: true });
    options.page.setDefaultTimeout(options.stepTimeoutMs ?? 30_000);
  }

  get page(): Page {
    return this.#o.page;
  }

  /** Runs one named step, then screenshots the page. */
  async step(name: string, action: () => Promise<void>): Promise<void> {
    const t = performance.now();
    await action();
    const ms = Math.round(performance.now() - t);
    let screenshot: string | undefined;
    if (this.#o.screenshotDir) {
      const file = `${this.#o.prefix ?? ''}${String(++this.#n).padStart(2, '0')}-${name.replace(/[^a-z0-9]+/gi, '-')}.png`;
      screenshot = join(this.#o.screenshotDir, file);
      await this.page.screenshot({ path: screenshot, fullPage: true });
    }
    const entry = { step: name, ms, screenshot };
    this.steps.push(entry);
    this.#o.onStep?.(entry);
  }

  async open(): Promise<void> {
    await this.step('open the app', async () => {
      await this.page.goto(this.#o.station.pwaUrl);
      await this.page.getByTestId('app-title').waitFor();
      await this.waitForServiceWorker();
    });
  }

  /**
   * Waits until the service worker is active and controls the page (the offline start depends
   * on it). The worker claims clients on first install, but a page Playwright opened before the
   * registration is not always claimed in headless Chromium; one reload — a driver's second
   * visit — makes it the controller in every run.
   */
  async waitForServiceWorker(): Promise<void> {
    await this.page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    const controlled = () => this.page.evaluate(() => navigator.serviceWorker.controller !== null);
    if (!(await controlled())) {
      await this.page.reload();
      await this.page.getByTestId('app-title').waitFor();
    }
    await this.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  }

  /** Wallet tab → credentials → `button` ('register' or 'sign-in') → the balance shows. */
  async #account(
    step: string,
    email: string,
    password: string,
    button: 'register' | 'sign-in',
  ): Promise<void> {
    await this.step(step, async () => {
      await this.page.getByTestId('tab-wallet').click();
      await this.page.getByTestId('email').fill(email);
      await this.page.getByTestId('password').fill(password);
      await this.page.getByTestId(button).click();
      await this.page.getByTestId('balance').waitFor();
    });
  }

  register(email: string, password: string): Promise<void> {
    return this.#account('register', email, password, 'register');
  }

  signIn(email: string, password: string): Promise<void> {
    return this.#account('sign in', email, password, 'sign-in');
  }

  async topUp(amountText: string, expectBalanceText: RegExp): Promise<void> {
    await this.step('top up', async () => {
      await this.page.getByTestId('top-up-amount').fill(amountText);
      await this.page.getByTestId('top-up').click();
      await this.page.getByTestId('balance').filter({ hasText: expectBalanceText }).waitFor();
    });
  }

  async buy(gatewayId: string, connector: number, amountText: string): Promise<void> {
    await this.step('buy a pre-deduction', async () => {
      await this.page.getByTestId('tab-stations').click();
      await this.page.getByTestId('station-offline').first().waitFor();
      await this.page.getByTestId(`buy-${gatewayId}-${connector}`).click();
      await this.page.getByTestId('amount').fill(amountText);
      await this.page.getByTestId('confirm-buy').click();
      await this.page.getByTestId('bought').waitFor();
    });
  }

  /** Browser offline, cloud stopped, PWA server stopped; reload from the service worker. */
  async goOffline(): Promise<void> {
    await this.step('go offline and reload', async () => {
      await this.#o.context.setOffline(true);
      await this.#o.station.stopCloud();
      await this.#o.station.stopPwa();
      await this.page.reload();
      await this.page.getByTestId('app-title').waitFor();
      await this.page
        .getByTestId('online')
        .filter({ hasText: /Offline|离线/ })
        .waitFor();
    });
  }

  async comeOnline(): Promise<void> {
    await this.step('back online', async () => {
      await this.#o.station.startCloud();
      await this.#o.station.startPwa();
      await this.#o.context.setOffline(false);
      await this.page.getByTestId('sync-now').click();
      await this.page
        .getByTestId('online')
        .filter({ hasText: /Online|在线/ })
        .waitFor();
      await this.page
        .getByTestId('pending')
        .filter({ hasText: /Everything uploaded|已全部上传/ })
        .waitFor();
    });
  }

  async usePileCode(code: string): Promise<void> {
    await this.step('enter the pile code', async () => {
      await this.page.getByTestId('tab-charge').click();
      await this.page.getByTestId('pile-code').fill(code);
      await this.page.getByTestId('use-code').click();
      await this.page.getByTestId('pile').waitFor();
    });
  }

  async tap(): Promise<void> {
    await this.step('tap to charge', async () => {
      await this.page.getByTestId('tab-charge').click();
      await this.page.getByTestId('tap').click();
      await this.page.getByTestId('charging').waitFor();
    });
  }

  async watchCharging(minEnergyText: RegExp): Promise<void> {
    await this.step('live status', async () => {
      await this.page.getByTestId('energy').filter({ hasText: minEnergyText }).waitFor();
    });
  }

  async stop(): Promise<void> {
    await this.step('stop', async () => {
      await this.page.getByTestId('stop').click();
      await this.page.getByTestId('receipt').waitFor();
    });
  }

  async receipts(): Promise<void> {
    await this.step('receipts', async () => {
      await this.page.getByTestId('tab-receipts').click();
      await this.page.getByTestId('receipt-item').first().waitFor();
    });
  }

  async walletShows(balance: RegExp): Promise<void> {
    await this.step('wallet after settlement', async () => {
      await this.page.getByTestId('tab-wallet').click();
      await this.page.getByTestId('sync-now').click();
      await this.page.getByTestId('balance').filter({ hasText: balance }).waitFor();
    });
  }
}

/** An energy display of at least 10 Wh, so the fee is not zero (22 kW: about 2 s). */
export const AT_LEAST_10_WH = /^(?:[1-9]\d*\.\d{3}|0\.(?:0[1-9]\d|[1-9]\d\d)) kWh/;

export interface JourneyOptions extends Omit<ScenarioOptions, 'page' | 'context'> {
  readonly browser: Browser;
  /** UI language for the run (the app follows it; default en). */
  readonly language?: 'en' | 'zh-CN';
  /** Driver account; a fresh one is registered (default) or the demo driver signs in. */
  readonly account?: { readonly email: string; readonly password: string; readonly existing?: boolean };
  /** Amount to top up and to hold, as typed (default 100 and 50). */
  readonly topUp?: string;
  readonly hold?: string;
  readonly connector?: number;
  /** How long to let the pile charge before stopping (default: until 10 Wh show). */
  readonly chargeUntil?: RegExp;
  readonly mtu?: BridgeMtu;
  readonly bridgeLogger?: BridgeLogger;
}

export interface JourneyResult {
  readonly steps: readonly ScenarioStep[];
  /** Balance text the wallet showed at the end. */
  readonly finalBalance: string;
  /** The receipt's charged amount as the app showed it. */
  readonly charged: string;
}

/**
 * The whole journey in a fresh browser context wired through the Web Bluetooth bridge to the
 * station's gateway: register → top up → buy for pile P → offline (browser, cloud and PWA
 * server) → reload from the service worker → tap → pile ON → live status → stop → receipt →
 * online → receipt uploaded → wallet shows the refund. Throws on the first step that fails.
 */
export async function runDriverJourney(options: JourneyOptions): Promise<JourneyResult> {
  const { browser, station } = options;
  const language = options.language ?? 'en';
  const context = await browser.newContext({ locale: language });
  const page = await context.newPage();
  const phonePty = station.phonePtys[0];
  if (!phonePty) throw new Error('the station has no radio left for a phone');
  const bridge = await startWebBluetoothBridge({
    browser,
    context,
    page,
    uartPort: phonePty,
    mtu: options.mtu ?? 256,
    ...(options.bridgeLogger ? { logger: options.bridgeLogger } : {}),
  });
  const s = new Scenario({ ...options, page, context });
  const account = options.account ?? {
    email: `driver-${Date.now().toString(36)}@pilepass.test`,
    password: 'correct horse battery',
  };
  const connector = options.connector ?? 1;
  try {
    await s.open();
    if (account.existing) await s.signIn(account.email, account.password);
    else await s.register(account.email, account.password);
    if (options.topUp !== '0') await s.topUp(options.topUp ?? '100', /\d/);
    await s.buy(station.gatewayId, connector, options.hold ?? '50');
    await s.goOffline();
    await bridge.ready();
    await bridge.scan({ minDevices: 1 });
    await s.usePileCode(`pilepass:${station.gatewayId}/${connector}`);
    await s.tap();
    await s.step('pile is on', async () => {
      const reading = await station.pile.read(connector);
      if (!reading.contactorOn) throw new Error(`the sim pile's connector ${connector} is off`);
    });
    await s.watchCharging(options.chargeUntil ?? AT_LEAST_10_WH);
    await s.stop();
    const charged = (await page.getByTestId('charged').textContent()) ?? '';
    await s.step('pile is off', async () => {
      const reading = await station.pile.read(connector);
      if (reading.contactorOn) throw new Error(`the sim pile's connector ${connector} is still on`);
    });
    await s.comeOnline();
    await s.receipts();
    await s.step('receipt uploaded', async () => {
      await page.getByTestId('receipt-item').first().and(page.locator('[data-uploaded="true"]')).waitFor();
    });
    await s.step('wallet shows the refund', async () => {
      await page.getByTestId('tab-wallet').click();
      await page.getByTestId('sync-now').click();
      await page
        .getByTestId('held')
        .filter({ hasText: /[^\d]0\.00$/ })
        .waitFor()
        .catch(async (err: unknown) => {
          throw new Error(
            `wallet still holds ${await page.getByTestId('held').textContent()} (balance ${await page.getByTestId('balance').textContent()})`,
            { cause: err },
          );
        });
    });
    const finalBalance = (await page.getByTestId('balance').textContent()) ?? '';
    return { steps: s.steps, finalBalance, charged };
  } finally {
    await bridge.close().catch(() => {});
    await context.close().catch(() => {});
  }
}
