/**
 * Tap to charge, framework-free: connect to the gateway over a {@link PhoneLink}, present the
 * voucher (or attach to a running session), follow the encrypted status, stop, and keep the
 * receipt. While a session is authenticated the phone also works as a courier: it hands the
 * gateway the newest sync bundle it holds and carries the gateway's report home.
 *
 * State changes go to one listener (the Svelte view mirrors them); everything durable goes to
 * the {@link PhoneStore} before the state says so, so a closed tab loses nothing.
 * @module
 */

import { toHex } from '../../../shared/src/bytes.ts';
import type { PhoneLink } from '../../../shared/src/client/phone.ts';
import { PhoneSession } from '../../../shared/src/client/phone.ts';
import type { CryptoProvider, SigningKey } from '../../../shared/src/crypto/provider.ts';
import { ErrorCode, ProtocolError } from '../../../shared/src/errors.ts';
import type { Receipt } from '../../../shared/src/messages/receipt.ts';
import { SessionMessageType, SessionState, type Status } from '../../../shared/src/session/messages.ts';
import type { BluetoothFailure } from '../ble/web-bluetooth-link.ts';
import { withDeadline } from '../deadline.ts';
import type { PhoneStore, StoredVoucher } from '../storage/db.ts';

/** Why a tap did not (or no longer) charge; each has a message in both languages. */
export type TapFailure =
  | {
      readonly kind: 'bluetooth';
      readonly failure: BluetoothFailure;
    }
  | { readonly kind: 'wrong-device' }
  | { readonly kind: 'wrong-station' }
  | { readonly kind: 'voucher-expired' }
  | { readonly kind: 'voucher-unusable'; readonly state: string }
  | { readonly kind: 'gateway'; readonly code: ErrorCode }
  | { readonly kind: 'link-lost' };

export type TapState =
  | { readonly phase: 'idle' }
  | { readonly phase: 'connecting' }
  | { readonly phase: 'presenting' }
  | { readonly phase: 'charging'; readonly status: Status }
  | { readonly phase: 'stopping'; readonly status: Status }
  /** The link dropped while the gateway keeps charging: re-attach to see it. */
  | { readonly phase: 'detached'; readonly status: Status | undefined }
  | { readonly phase: 'finished'; readonly receipt: Receipt; readonly hash: string }
  | { readonly phase: 'failed'; readonly failure: TapFailure };

/** A link the controller can drop (Web Bluetooth in the app, in-process in tests). */
export interface ClosableLink extends PhoneLink {
  disconnect(): void;
}

export interface ChargingDeps {
  readonly crypto: CryptoProvider;
  readonly store: PhoneStore;
  /** Opens a link to the voucher's gateway (shows the chooser). Throws on failure. */
  readonly connect: (gatewayId: string) => Promise<ClosableLink>;
  /** Maps a connect error to a failure (Web Bluetooth's typed errors). */
  readonly classifyConnectError: (err: unknown) => TapFailure;
  /** Rebuilds the device key from the voucher's stored key pair. */
  readonly deviceKey: (voucher: StoredVoucher) => Promise<SigningKey>;
  /** Unix seconds on the phone's clock (for display checks only; the gateway decides). */
  readonly nowSeconds: () => number;
  /** How long to wait for the gateway's first answer to a presentation. */
  readonly answerTimeoutMs?: number;
  /** Called after a receipt or gateway report was stored (to take it home when online). */
  readonly onCarried?: () => void;
}

/** Codes meaning "this device is not the voucher's station": let the driver pick again. */
const WRONG_DEVICE_CODES: ReadonlySet<number> = new Set([
  ErrorCode.HELLO_SIGNATURE_INVALID,
  ErrorCode.WRONG_GATEWAY,
]);

export class ChargingController {
  readonly #deps: ChargingDeps;
  readonly #listener: (state: TapState) => void;
  #state: TapState = { phase: 'idle' };
  #session: PhoneSession | undefined;
  #link: ClosableLink | undefined;
  /** The report request after a receipt, while it runs. */
  #finishing: Promise<void> | undefined;

  constructor(deps: ChargingDeps, listener: (state: TapState) => void) {
    this.#deps = deps;
    this.#listener = listener;
  }

  get state(): TapState {
    return this.#state;
  }

  #set(state: TapState): void {
    this.#state = state;
    this.#listener(state);
  }

  /** Checks the phone can know before any radio: station, expiry, state. */
  precheck(voucher: StoredVoucher, pile?: { gatewayId: string; connector: number }): TapFailure | undefined {
    if (pile && pile.gatewayId !== voucher.gatewayId) return { kind: 'wrong-station' };
    if (pile && voucher.connector !== undefined && pile.connector !== voucher.connector)
      return { kind: 'gateway', code: ErrorCode.WRONG_CONNECTOR };
    if (voucher.cloudState === 'cancelled' || voucher.cloudState === 'refunded')
      return { kind: 'voucher-unusable', state: voucher.cloudState };
    if (voucher.localState === 'used' || voucher.cloudState === 'settled')
      return { kind: 'gateway', code: ErrorCode.VOUCHER_SPENT };
    if (this.#deps.nowSeconds() > voucher.expiresAt) return { kind: 'voucher-expired' };
    return undefined;
  }

  /** Tap: present `voucher` for `connector`. Resolves when charging runs or the tap failed. */
  async start(voucher: StoredVoucher, connector: number): Promise<TapState> {
    const early = this.precheck(voucher, { gatewayId: voucher.gatewayId, connector });
    if (early) {
      this.#set({ phase: 'failed', failure: early });
      return this.#state;
    }
    return this.#run(voucher, connector);
  }

  /** Re-attach after a dropped link: shows the running session, or fetches its receipt. */
  attach(voucher: StoredVoucher): Promise<TapState> {
    return this.#run(voucher, undefined);
  }

  async #run(voucher: StoredVoucher, connector: number | undefined): Promise<TapState> {
    this.#close();
    this.#set({ phase: 'connecting' });
    let link: ClosableLink;
    try {
      link = await this.#deps.connect(voucher.gatewayId);
    } catch (err) {
      this.#set({ phase: 'failed', failure: this.#deps.classifyConnectError(err) });
      return this.#state;
    }
    this.#link = link;
    const session = new PhoneSession({
      crypto: this.#deps.crypto,
      link,
      voucherBytes: voucher.voucher,
      deviceKey: await this.#deps.deviceKey(voucher),
    });
    this.#session = session;
    // Collect every event from the start: a rejection can arrive before `present` returns.
    const firstAnswer = session.next(
      (e) =>
        e.kind === 'status' ||
        e.kind === 'receipt' ||
        e.kind === 'rejected' ||
        e.kind === 'error' ||
        e.kind === 'disconnected',
      this.#deps.answerTimeoutMs ?? 15_000,
    );
    firstAnswer.catch(() => undefined);
    this.#set({ phase: 'presenting' });
    try {
      // A radio that stops answering mid-presentation must not leave the driver waiting forever.
      await withDeadline(
        session.present(connector, this.#deps.nowSeconds()),
        this.#deps.answerTimeoutMs ?? 15_000,
        () => new ProtocolError(ErrorCode.DEADLINE_EXCEEDED),
      );
    } catch (err) {
      if (err instanceof ProtocolError && err.code === ErrorCode.DEADLINE_EXCEEDED) {
        this.#close();
        this.#set({ phase: 'failed', failure: { kind: 'gateway', code: ErrorCode.DEADLINE_EXCEEDED } });
        return this.#state;
      }
      if (err instanceof ProtocolError && session.hello === undefined) {
        // The hello failed the voucher's gateway-key check: a clone or a neighbour's station.
        this.#close();
        this.#set({
          phase: 'failed',
          failure: WRONG_DEVICE_CODES.has(err.code)
            ? { kind: 'wrong-device' }
            : { kind: 'gateway', code: err.code },
        });
        return this.#state;
      }
      // The write failed: usually the gateway refused and dropped the link; its code comes first.
    }
    let first: Awaited<typeof firstAnswer>;
    try {
      first = await firstAnswer;
    } catch {
      this.#close();
      this.#set({ phase: 'failed', failure: { kind: 'gateway', code: ErrorCode.DEADLINE_EXCEEDED } });
      return this.#state;
    }
    if (first.kind === 'rejected' || first.kind === 'error') {
      this.#close();
      if (first.code === ErrorCode.VOUCHER_EXPIRED)
        this.#set({ phase: 'failed', failure: { kind: 'voucher-expired' } });
      else if (first.code === ErrorCode.WRONG_GATEWAY)
        this.#set({ phase: 'failed', failure: { kind: 'wrong-station' } });
      else this.#set({ phase: 'failed', failure: { kind: 'gateway', code: first.code } });
      return this.#state;
    }
    if (first.kind === 'disconnected') {
      this.#close();
      this.#set({ phase: 'failed', failure: { kind: 'link-lost' } });
      return this.#state;
    }
    this.#follow(session, voucher);
    if (first.kind === 'receipt') await this.#keepReceipt(first.receipt);
    else if (first.kind === 'status') await this.#onStatus(voucher, first.status);
    if (this.#state.phase === 'charging') void this.#courier(session, voucher.gatewayId);
    return this.#state;
  }

  /** Asks the gateway to stop (device-signed); the receipt follows by notification. */
  async stop(): Promise<void> {
    const state = this.#state;
    if (state.phase !== 'charging' || !this.#session) return;
    this.#set({ phase: 'stopping', status: state.status });
    await this.#session.stop();
  }

  /** Leaves the station screen; the gateway keeps charging if it was. */
  leave(): void {
    // After a receipt the link stays up until the gateway's report has come home (it closes
    // itself then); leaving earlier would drop the report the phone is carrying.
    if (!this.#finishing) this.#close();
    this.#set({ phase: 'idle' });
  }

  #follow(session: PhoneSession, voucher: StoredVoucher): void {
    session.onEvent((event) => {
      if (session !== this.#session) return;
      if (event.kind === 'status') void this.#onStatus(voucher, event.status);
      else if (event.kind === 'receipt') void this.#keepReceipt(event.receipt);
      else if (event.kind === 'disconnected') {
        if (this.#state.phase === 'charging' || this.#state.phase === 'stopping')
          this.#set({ phase: 'detached', status: this.#state.status });
        this.#session = undefined;
        this.#link = undefined;
      } else if (event.kind === 'report') void this.#keepReport(voucher.gatewayId, event.report);
    });
  }

  async #onStatus(voucher: StoredVoucher, status: Status): Promise<void> {
    if (this.#state.phase === 'finished') return;
    if (voucher.localState === 'ready') {
      // The gateway spent it: never offer this voucher for another tap.
      await this.#deps.store.updateVoucher(voucher.cti, (v) => ({
        ...v,
        localState: v.localState === 'used' ? 'used' : 'charging',
        chargingConnector: status.connector,
      }));
    }
    if (status.state === SessionState.FINISHED || status.state === SessionState.FAILED) return;
    this.#set({ phase: this.#state.phase === 'stopping' ? 'stopping' : 'charging', status });
  }

  async #keepReceipt(receipt: Receipt): Promise<void> {
    const hash = toHex(await this.#deps.crypto.sha256(receipt.bytes));
    const b = receipt.body;
    const cti = toHex(b.cti);
    await this.#deps.store.addReceipt({
      hash,
      cti,
      bytes: receipt.bytes,
      gatewayId: b.gatewayId,
      energyWh: b.energyWh,
      chargedAmount: b.chargedAmount,
      currency: b.currency,
      startedAt: b.startedAt,
      stoppedAt: b.stoppedAt,
      stopReason: b.stopReason,
      receivedAt: this.#deps.nowSeconds(),
      uploaded: false,
    });
    await this.#deps.store.updateVoucher(cti, (v) => ({ ...v, localState: 'used' }));
    this.#set({ phase: 'finished', receipt, hash });
    // Ask for the gateway's report after the receipt too: it now includes this session.
    const session = this.#session;
    if (session) {
      this.#finishing = this.#requestReport(session).finally(() => {
        this.#finishing = undefined;
        if (this.#session === session) this.#close();
      });
    }
  }

  async #keepReport(gatewayId: string, bytes: Uint8Array): Promise<void> {
    const hash = toHex(await this.#deps.crypto.sha256(bytes));
    await this.#deps.store.addReport({
      hash,
      gatewayId,
      bytes,
      receivedAt: this.#deps.nowSeconds(),
      uploaded: false,
    });
    this.#deps.onCarried?.();
  }

  /** Courier duties, best effort: never in the way of charging. */
  async #courier(session: PhoneSession, gatewayId: string): Promise<void> {
    try {
      const bundle = await this.#deps.store.getBundle(gatewayId);
      if (bundle) {
        await session.sendBundle(bundle.bundle);
        await session.next((e) => e.kind === 'ack' && e.acknowledged === SessionMessageType.BUNDLE, 10_000);
      }
      await this.#requestReport(session);
    } catch {
      // An older bundle refused, a link that dropped: the next tap tries again.
    }
  }

  async #requestReport(session: PhoneSession): Promise<void> {
    try {
      const answer = session.next(
        (e) =>
          e.kind === 'report' || (e.kind === 'ack' && e.acknowledged === SessionMessageType.REPORT_REQUEST),
        10_000,
      );
      await session.requestReport();
      await answer; // #follow stores the report
    } catch {
      // nothing pending, or the link is gone
    }
  }

  #close(): void {
    this.#session?.close();
    this.#session = undefined;
    this.#link?.disconnect();
    this.#link = undefined;
  }
}
