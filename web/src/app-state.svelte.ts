/**
 * The app's reactive state (Svelte 5 runes) and the actions the screens call. Logic lives in
 * the framework-free modules it wires together — CloudClient, PhoneStore, VoucherService,
 * uploadPending, ChargingController — which are unit-tested on their own; this class only
 * keeps what the views show in sync with them.
 * @module
 */

import { createWebCrypto } from '../../shared/src/crypto/webcrypto.ts';
import { CloudClient, CloudError, type StationView, type Wallet } from './api/cloud-client.ts';
import { classifyRequestDeviceError, connectGateway, WebBluetoothError } from './ble/web-bluetooth-link.ts';
import { ChargingController, type TapFailure, type TapState } from './charging/charging-controller.ts';
import type { PileCode } from './scan/pile-code.ts';
import { PhoneStore, type StoredReceipt, type StoredVoucher } from './storage/db.ts';
import { type PersistResult, requestPersistentStorage } from './storage/persist.ts';
import { uploadPending } from './sync/uploader.ts';
import { VoucherService, voucherStatus } from './vouchers/voucher-service.ts';

export type Tab = 'charge' | 'stations' | 'vouchers' | 'wallet' | 'receipts';

interface Account {
  readonly email: string;
  readonly token: string;
  readonly expiresAt: number;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export class AppState {
  readonly crypto = createWebCrypto();
  readonly cloud = new CloudClient();
  store!: PhoneStore;
  vouchersService!: VoucherService;
  controller!: ChargingController;

  ready = $state(false);
  tab = $state<Tab>('charge');
  account = $state<Account | undefined>(undefined);
  wallet = $state<Wallet | undefined>(undefined);
  stations = $state<StationView[]>([]);
  vouchers = $state<StoredVoucher[]>([]);
  receipts = $state<StoredReceipt[]>([]);
  online = $state(true);
  pendingUploads = $state(0);
  lastSyncAt = $state<number | undefined>(undefined);
  syncing = $state(false);
  persist = $state<PersistResult | undefined>(undefined);
  tap = $state<TapState>({ phase: 'idle' });
  pile = $state<PileCode | undefined>(undefined);
  selectedCti = $state<string | undefined>(undefined);
  notice = $state<{ key: string; params?: Record<string, string> } | undefined>(undefined);
  clock = $state(nowSeconds());
  #syncAgain = false;

  async init(): Promise<void> {
    this.store = await PhoneStore.open();
    this.vouchersService = new VoucherService(this.crypto, this.cloud, this.store);
    this.controller = new ChargingController(
      {
        crypto: this.crypto,
        store: this.store,
        connect: (gatewayId) => connectGateway({ gatewayId }),
        classifyConnectError: (err): TapFailure => ({
          kind: 'bluetooth',
          failure: err instanceof WebBluetoothError ? err.failure : classifyRequestDeviceError(err),
        }),
        deviceKey: (v) => this.crypto.signingKeyFromKeyPair(v.keyPair),
        nowSeconds,
        onCarried: () => void this.sync(),
      },
      (state) => {
        this.tap = state;
        void this.reloadLocal();
        if (state.phase === 'finished') void this.sync();
      },
    );
    const account = await this.store.getMeta<Account>('account');
    if (account && account.expiresAt > nowSeconds()) {
      this.account = account;
      this.cloud.token = account.token;
    }
    this.stations = (await this.store.getMeta<StationView[]>('stations')) ?? [];
    this.wallet = await this.store.getMeta<Wallet>('wallet');
    this.lastSyncAt = await this.store.getMeta<number>('lastSyncAt');
    await this.reloadLocal();
    this.ready = true;
    setInterval(() => {
      this.clock = nowSeconds();
    }, 30_000);
    window.addEventListener('online', () => void this.sync());
    this.persist = await requestPersistentStorage();
    void this.sync();
  }

  async reloadLocal(): Promise<void> {
    this.vouchers = await this.store.vouchers();
    this.receipts = await this.store.receipts();
    this.pendingUploads =
      this.receipts.filter((r) => !r.uploaded).length +
      (await this.store.reports()).filter((r) => !r.uploaded).length;
    if (!this.selectedCti || !this.vouchers.some((v) => v.cti === this.selectedCti && this.isReady(v)))
      this.selectedCti = this.vouchers.find((v) => this.isReady(v))?.cti;
  }

  isReady(v: StoredVoucher): boolean {
    return voucherStatus(v, this.clock) === 'ready';
  }

  /** Everything the cloud can tell and take, when it can be reached. Never throws. */
  async sync(): Promise<void> {
    if (this.syncing) {
      // Something new to carry arrived mid-sync: one more round when this one ends.
      this.#syncAgain = true;
      return;
    }
    this.syncing = true;
    try {
      const outcome = await uploadPending(this.cloud, this.store);
      let offline = outcome.offline;
      if (!offline) {
        try {
          this.stations = await this.cloud.stations();
          await this.store.setMeta('stations', $state.snapshot(this.stations));
          if (this.account) {
            this.wallet = await this.cloud.wallet();
            await this.store.setMeta('wallet', $state.snapshot(this.wallet));
            await this.vouchersService.mergeCloudStates(await this.cloud.vouchers());
          }
        } catch (err) {
          if (err instanceof CloudError && err.offline) offline = true;
          else if (err instanceof CloudError && err.status === 401) await this.signOut();
        }
      }
      this.online = !offline;
      if (!offline) {
        this.lastSyncAt = nowSeconds();
        await this.store.setMeta('lastSyncAt', this.lastSyncAt);
      }
      await this.reloadLocal();
    } finally {
      this.syncing = false;
    }
    if (this.#syncAgain) {
      this.#syncAgain = false;
      await this.sync();
    }
  }

  async signIn(email: string, password: string, create: boolean): Promise<void> {
    if (create) await this.cloud.register(email, password);
    const session = await this.cloud.signIn(email, password);
    this.account = { email, token: session.token, expiresAt: session.expiresAt };
    await this.store.setMeta('account', $state.snapshot(this.account));
    await this.sync();
  }

  async signOut(): Promise<void> {
    this.account = undefined;
    this.cloud.token = undefined;
    this.wallet = undefined;
    await this.store.deleteMeta('account');
    await this.store.deleteMeta('wallet');
  }

  async topUp(amount: number): Promise<void> {
    await this.cloud.topUp(amount);
    this.wallet = await this.cloud.wallet();
    await this.store.setMeta('wallet', $state.snapshot(this.wallet));
  }

  async buy(gatewayId: string, connector: number | undefined, amount: number): Promise<StoredVoucher> {
    const voucher = await this.vouchersService.buy({ gatewayId, connector, amount });
    await this.sync(); // the bundle for this station, the wallet's new hold
    this.selectedCti = voucher.cti;
    return voucher;
  }

  async cancel(cti: string): Promise<void> {
    await this.vouchersService.cancel(cti);
    await this.sync();
  }

  selectedVoucher(): StoredVoucher | undefined {
    return this.vouchers.find((v) => v.cti === this.selectedCti);
  }

  /** The voucher a re-attach is for: the one that started charging on this phone. */
  chargingVoucher(): StoredVoucher | undefined {
    return this.vouchers.find((v) => v.localState === 'charging');
  }

  async startCharging(): Promise<void> {
    const voucher = this.selectedVoucher();
    if (!voucher) return;
    const connector = this.pile?.connector ?? voucher.connector ?? 1;
    if (this.pile) {
      const early = this.controller.precheck(voucher, this.pile);
      if (early) {
        this.tap = { phase: 'failed', failure: early };
        return;
      }
    }
    await this.controller.start($state.snapshot(voucher) as StoredVoucher, connector);
  }

  async reattach(): Promise<void> {
    const voucher = this.chargingVoucher() ?? this.selectedVoucher();
    if (voucher) await this.controller.attach($state.snapshot(voucher) as StoredVoucher);
  }

  stopCharging(): Promise<void> {
    return this.controller.stop();
  }

  dismissTap(): void {
    this.controller.leave();
  }
}
