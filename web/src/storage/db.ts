/**
 * The phone's durable state in IndexedDB (idb): vouchers **with their non-extractable device
 * keys** (a CryptoKeyPair is structured-cloneable, so the private key never leaves WebCrypto),
 * receipts and gateway reports waiting to go home, the latest sync bundle per station, and a
 * small key-value store (session token, device id, cached stations and wallet).
 *
 * Losing this database loses money (an unused voucher's key, an unsent receipt), which is why
 * the app asks for persistent storage (see persist.ts).
 * @module
 */

import { type DBSchema, type IDBPDatabase, openDB } from 'idb';
import type { CloudVoucherState } from '../api/cloud-client.ts';

export const DB_NAME = 'pilepass';
export const DB_VERSION = 1;

/** A voucher as the phone keeps it. `cti` is hex; money in minor units; times Unix seconds. */
export interface StoredVoucher {
  readonly cti: string;
  readonly voucher: Uint8Array;
  readonly keyPair: CryptoKeyPair;
  readonly gatewayId: string;
  readonly connector: number | undefined;
  readonly holdAmount: number;
  readonly currency: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** What the phone itself saw: a tap started charging with it, or a receipt came back. */
  readonly localState: 'ready' | 'charging' | 'used';
  /** The cloud's view when last online. */
  readonly cloudState?: CloudVoucherState | undefined;
  readonly captured?: number | undefined;
  readonly refunded?: number | undefined;
  /** The connector a tap started, for re-attach. */
  readonly chargingConnector?: number | undefined;
}

export interface StoredReceipt {
  /** Hex SHA-256 of the receipt bytes: the cloud's idempotency key too. */
  readonly hash: string;
  readonly cti: string;
  readonly bytes: Uint8Array;
  readonly gatewayId: string;
  readonly energyWh: number;
  readonly chargedAmount: number;
  readonly currency: string;
  readonly startedAt: number;
  readonly stoppedAt: number;
  readonly stopReason: number;
  readonly receivedAt: number;
  readonly uploaded: boolean;
  /** The cloud's verdict once uploaded: settled, duplicate, conflict or rejected. */
  readonly cloudStatus?: string | undefined;
}

export interface StoredReport {
  readonly hash: string;
  readonly gatewayId: string;
  readonly bytes: Uint8Array;
  readonly receivedAt: number;
  readonly uploaded: boolean;
}

export interface StoredBundle {
  readonly gatewayId: string;
  readonly bundle: Uint8Array;
  readonly version: number;
  readonly fetchedAt: number;
}

interface PilePassSchema extends DBSchema {
  vouchers: { key: string; value: StoredVoucher; indexes: { gatewayId: string } };
  receipts: { key: string; value: StoredReceipt; indexes: { cti: string } };
  reports: { key: string; value: StoredReport };
  bundles: { key: string; value: StoredBundle };
  meta: { key: string; value: unknown };
}

export type PilePassDb = IDBPDatabase<PilePassSchema>;

export function openPilePassDb(name = DB_NAME): Promise<PilePassDb> {
  return openDB<PilePassSchema>(name, DB_VERSION, {
    upgrade(db) {
      const vouchers = db.createObjectStore('vouchers', { keyPath: 'cti' });
      vouchers.createIndex('gatewayId', 'gatewayId');
      const receipts = db.createObjectStore('receipts', { keyPath: 'hash' });
      receipts.createIndex('cti', 'cti');
      db.createObjectStore('reports', { keyPath: 'hash' });
      db.createObjectStore('bundles', { keyPath: 'gatewayId' });
      db.createObjectStore('meta');
    },
  });
}

/** Typed access to the stores; every write is its own transaction (durable on resolve). */
export class PhoneStore {
  readonly db: PilePassDb;

  constructor(db: PilePassDb) {
    this.db = db;
  }

  static async open(name?: string): Promise<PhoneStore> {
    return new PhoneStore(await openPilePassDb(name));
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    return (await this.db.get('meta', key)) as T | undefined;
  }

  async setMeta(key: string, value: unknown): Promise<void> {
    await this.db.put('meta', value, key);
  }

  async deleteMeta(key: string): Promise<void> {
    await this.db.delete('meta', key);
  }

  /** A random id for this installation (the cloud's per-device outstanding cap keys on it). */
  async deviceId(): Promise<string> {
    const known = await this.getMeta<string>('deviceId');
    if (known) return known;
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    const id = `pwa-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    await this.setMeta('deviceId', id);
    return id;
  }

  putVoucher(voucher: StoredVoucher): Promise<string> {
    return this.db.put('vouchers', voucher);
  }

  getVoucher(cti: string): Promise<StoredVoucher | undefined> {
    return this.db.get('vouchers', cti);
  }

  async vouchers(): Promise<StoredVoucher[]> {
    const all = await this.db.getAll('vouchers');
    return all.sort((a, b) => b.issuedAt - a.issuedAt);
  }

  /** Changes one voucher inside one transaction (read-modify-write without a lost update). */
  async updateVoucher(
    cti: string,
    change: (v: StoredVoucher) => StoredVoucher,
  ): Promise<StoredVoucher | undefined> {
    const tx = this.db.transaction('vouchers', 'readwrite');
    const current = await tx.store.get(cti);
    if (!current) {
      await tx.done;
      return undefined;
    }
    const next = change(current);
    await tx.store.put(next);
    await tx.done;
    return next;
  }

  /** Keeps the first copy (same hash = same bytes); returns whether it was new. */
  async #addOnce<S extends 'receipts' | 'reports'>(
    store: S,
    value: PilePassSchema[S]['value'],
  ): Promise<boolean> {
    const tx = this.db.transaction(store, 'readwrite');
    const known = await tx.store.get(value.hash);
    if (!known) await tx.store.put(value);
    await tx.done;
    return !known;
  }

  async #markUploaded(store: 'receipts' | 'reports', hash: string, cloudStatus?: string): Promise<void> {
    const tx = this.db.transaction(store, 'readwrite');
    const r = await tx.store.get(hash);
    if (r) await tx.store.put({ ...r, uploaded: true, ...(cloudStatus ? { cloudStatus } : {}) });
    await tx.done;
  }

  addReceipt(receipt: StoredReceipt): Promise<boolean> {
    return this.#addOnce('receipts', receipt);
  }

  async receipts(): Promise<StoredReceipt[]> {
    const all = await this.db.getAll('receipts');
    return all.sort((a, b) => b.stoppedAt - a.stoppedAt);
  }

  async receiptsFor(cti: string): Promise<StoredReceipt[]> {
    return this.db.getAllFromIndex('receipts', 'cti', cti);
  }

  markReceiptUploaded(hash: string, cloudStatus?: string): Promise<void> {
    return this.#markUploaded('receipts', hash, cloudStatus);
  }

  addReport(report: StoredReport): Promise<boolean> {
    return this.#addOnce('reports', report);
  }

  reports(): Promise<StoredReport[]> {
    return this.db.getAll('reports');
  }

  markReportUploaded(hash: string): Promise<void> {
    return this.#markUploaded('reports', hash);
  }

  /** Stores a bundle unless a newer version is already kept. */
  async putBundle(bundle: StoredBundle): Promise<void> {
    const tx = this.db.transaction('bundles', 'readwrite');
    const known = await tx.store.get(bundle.gatewayId);
    if (!known || known.version < bundle.version) await tx.store.put(bundle);
    await tx.done;
  }

  getBundle(gatewayId: string): Promise<StoredBundle | undefined> {
    return this.db.get('bundles', gatewayId);
  }
}
