/**
 * Keeping an offline gateway current, whichever way data travels (cloud directly, or phones
 * as couriers): install a newer root-signed sync bundle (keys, revocations, receipt acks,
 * cloud time when bound to our own nonce) and build the signed gateway report (pending
 * receipts, ledger checkpoint, revocation attestations) for the cloud.
 * @module
 */

import {
  type Bundle,
  type CryptoProvider,
  ErrorCode,
  IssuerKeyring,
  keyringFromBundle,
  MAX_RECEIPTS_PER_REPORT,
  ProtocolError,
  parseBundle,
  type RootKey,
  type SigningKey,
  signReport,
  verifyBundle,
} from '../../shared/src/index.ts';
import type { TrustedClock } from './contracts.ts';
import type { Ledger } from './ledger/ledger.ts';

export interface SyncOptions {
  readonly crypto: CryptoProvider;
  readonly ledger: Ledger;
  readonly clock: TrustedClock;
  readonly root: RootKey | undefined;
  readonly gatewayId: string;
  readonly gatewayKey: SigningKey;
  readonly gatewayKid: Uint8Array;
  readonly log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export class GatewaySync {
  readonly #o: SyncOptions;
  #keyring: IssuerKeyring = new IssuerKeyring([]);
  #bundleVersion: number | undefined;

  constructor(options: SyncOptions) {
    this.#o = options;
  }

  /** Loads the installed bundle at start-up (re-verified: a file on disk is not trusted). */
  async load(): Promise<void> {
    const installed = this.#o.ledger.installedBundle();
    if (!installed || !this.#o.root) return;
    const bundle = parseBundle(installed.bytes);
    await verifyBundle(this.#o.crypto, bundle, this.#o.root, {
      installedVersion: undefined,
      gatewayId: this.#o.gatewayId,
    });
    this.#keyring = keyringFromBundle(bundle);
    this.#bundleVersion = bundle.body.version;
  }

  /** Issuer keys from the latest root-signed bundle; empty until one is installed. */
  get keyring(): IssuerKeyring {
    return this.#keyring;
  }

  get bundleVersion(): number | undefined {
    return this.#bundleVersion;
  }

  /**
   * Verifies and installs a bundle. `pendingNonce` is the nonce of our own live request (only
   * then may its time move the clock). Throws ProtocolError for a bundle that must not install.
   */
  async installBundle(bytes: Uint8Array, pendingNonce?: Uint8Array): Promise<Bundle> {
    const { crypto, ledger, root, gatewayId, clock } = this.#o;
    if (!root)
      throw new ProtocolError(
        ErrorCode.BUNDLE_SIGNATURE_INVALID,
        'no root key pinned: provision the gateway first',
      );
    const bundle = parseBundle(bytes);
    const { cloudTimeTrusted } = await verifyBundle(crypto, bundle, root, {
      installedVersion: this.#bundleVersion,
      gatewayId,
      pendingNonce,
    });
    const sequence = ledger.installBundle(bundle.body.version, bytes, bundle.body.revokedVouchers);
    const ack = bundle.body.receiptAcks.find((a) => a.gatewayId === gatewayId);
    if (ack) {
      const acked = ledger
        .pendingReceipts(Number.MAX_SAFE_INTEGER)
        .filter((r) => r.sequence <= ack.upToSequence);
      ledger.acknowledgeReceipts(acked.map((r) => r.hash));
    }
    if (cloudTimeTrusted) clock.setCloudTime(bundle.body.issuedAt);
    this.#keyring = keyringFromBundle(bundle);
    this.#bundleVersion = bundle.body.version;
    this.#o.log?.info({ version: bundle.body.version, sequence, cloudTimeTrusted }, 'sync bundle installed');
    return bundle;
  }

  /** For phone-carried bundles: 0 when installed, the error code otherwise (never throws). */
  async installCarriedBundle(bytes: Uint8Array): Promise<number> {
    try {
      await this.installBundle(bytes);
      return 0;
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : ErrorCode.INTERNAL;
      this.#o.log?.warn({ code }, 'carried bundle refused');
      return code;
    }
  }

  /** The signed report of what the cloud has not acknowledged yet (oldest receipts first). */
  async buildReport(cloudNonce?: Uint8Array): Promise<Uint8Array> {
    const { ledger, gatewayKey, gatewayKid, gatewayId, clock } = this.#o;
    const receipts = ledger.pendingReceipts(MAX_RECEIPTS_PER_REPORT).map((r) => r.bytes);
    const report = await signReport(gatewayKey, gatewayKid, {
      gatewayId,
      createdAt: clock.now(),
      receipts,
      checkpoint: ledger.receiptCheckpoint(),
      revocations: ledger.revocationAttestations(),
      cloudNonce,
    });
    return report.bytes;
  }
}
