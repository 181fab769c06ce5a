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
import type { BrowserContext, Page } from 'playwright-core';
import type { WholeStation } from './whole-station.ts';

export interface ScenarioStep {
  readonly step: string;
  readonly ms: number;
  readonly screenshot?: string | undefined;
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

  async register(email: string, password: string): Promise<void> {
    await this.step('register', async () => {
      await this.page.getByTestId('tab-wallet').click();
      await this.page.getByTestId('email').fill(email);
      await this.page.getByTestId('password').fill(password);
      await this.page.getByTestId('register').click();
      await this.page.getByTestId('balance').waitFor();
    });
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
