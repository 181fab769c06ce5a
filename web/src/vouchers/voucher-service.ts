/**
 * Buying, listing and cancelling pre-deductions. A purchase makes a **fresh non-extractable
 * WebCrypto key per voucher**, sends only its public half to the cloud, checks that the voucher
 * that comes back is bound to that key and to the station asked for, and stores both together.
 * @module
 */

import { toHex } from '../../../shared/src/bytes.ts';
import type { WebCryptoProvider } from '../../../shared/src/crypto/webcrypto.ts';
import { parseVoucher } from '../../../shared/src/messages/voucher.ts';
import { type CloudClient, type CloudVoucher, fromBase64Url } from '../api/cloud-client.ts';
import type { PhoneStore, StoredVoucher } from '../storage/db.ts';

export type VoucherStatus = 'ready' | 'charging' | 'used' | 'expired' | 'refunded' | 'cancelled';

/** What the driver sees for a voucher, from the phone's own record and the cloud's last word. */
export function voucherStatus(v: StoredVoucher, nowSeconds: number): VoucherStatus {
  if (v.cloudState === 'cancelled') return 'cancelled';
  if (v.cloudState === 'settled' || v.localState === 'used') return 'used';
  if (v.localState === 'charging') return 'charging';
  if (v.cloudState === 'refunded') return nowSeconds > v.expiresAt ? 'expired' : 'refunded';
  if (nowSeconds > v.expiresAt) return 'expired';
  return 'ready';
}

export class VoucherMismatchError extends Error {
  override readonly name = 'VoucherMismatchError';
}

export interface PurchaseRequest {
  readonly gatewayId: string;
  readonly connector?: number | undefined;
  readonly amount: number;
}

export class VoucherService {
  readonly #crypto: WebCryptoProvider;
  readonly #cloud: CloudClient;
  readonly #store: PhoneStore;

  constructor(crypto: WebCryptoProvider, cloud: CloudClient, store: PhoneStore) {
    this.#crypto = crypto;
    this.#cloud = cloud;
    this.#store = store;
  }

  /** Holds `amount` at the cloud for the station and stores the voucher with its key. */
  async buy(request: PurchaseRequest, idempotencyKey?: string): Promise<StoredVoucher> {
    const key = await this.#crypto.generateSigningKey();
    const issued = await this.#cloud.issueVoucher(
      {
        gatewayId: request.gatewayId,
        ...(request.connector === undefined ? {} : { connector: request.connector }),
        amount: request.amount,
        devicePublicKey: key.publicKey,
        deviceId: await this.#store.deviceId(),
      },
      idempotencyKey,
    );
    const bytes = fromBase64Url(issued.voucher);
    const { claims } = parseVoucher(bytes);
    // The cloud must have bound this phone's key and the station asked for; anything else is
    // useless at the pile (and a sign of a broken or hostile server).
    if (toHex(claims.deviceKey) !== toHex(key.publicKey))
      throw new VoucherMismatchError('the voucher is not bound to this device key');
    if (claims.gatewayId !== request.gatewayId)
      throw new VoucherMismatchError('the voucher is for another station');
    const stored: StoredVoucher = {
      cti: toHex(claims.cti),
      voucher: bytes,
      keyPair: key.keyPair,
      gatewayId: claims.gatewayId,
      connector: claims.connector,
      holdAmount: claims.hold.amount,
      currency: claims.hold.currency,
      issuedAt: claims.issuedAt,
      expiresAt: claims.expiresAt,
      localState: 'ready',
      cloudState: 'issued',
    };
    await this.#store.putVoucher(stored);
    return stored;
  }

  /** Lost-phone flow from this phone: revoke at the cloud; the hold comes back later. */
  async cancel(cti: string): Promise<void> {
    const result = await this.#cloud.cancelVoucher(cti);
    await this.#store.updateVoucher(cti, (v) => ({
      ...v,
      cloudState: result.state as StoredVoucher['cloudState'],
    }));
  }

  /** Merges the cloud's list into the phone's (states, captures, refunds). */
  async mergeCloudStates(cloudVouchers: readonly CloudVoucher[]): Promise<void> {
    for (const c of cloudVouchers) {
      await this.#store.updateVoucher(c.cti, (v) => ({
        ...v,
        cloudState: c.state,
        captured: c.captured,
        refunded: c.refunded,
      }));
    }
  }
}
