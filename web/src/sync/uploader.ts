/**
 * The phone as courier, cloud side: upload every receipt and gateway report it holds (the
 * cloud is idempotent by hash, so a repeat is harmless), and fetch the newest signed sync bundle
 * for each station it holds vouchers for, to hand to the gateway at the next tap. Runs on app
 * open, when the browser comes online, and after a tap; the service worker's Background Sync
 * replays an upload the page could not finish.
 * @module
 */

import type { CloudClient } from '../api/cloud-client.ts';
import type { PhoneStore } from '../storage/db.ts';

export interface SyncOutcome {
  readonly uploadedReceipts: number;
  readonly uploadedReports: number;
  /** Still waiting for the cloud (offline, or refused for a reason worth a retry). */
  readonly pending: number;
  readonly bundles: number;
  /** Set when the cloud could not be reached at all. */
  readonly offline: boolean;
}

/** Upload outcomes that settle a receipt for good (anything else is retried later). */
const FINAL_RECEIPT_STATUSES = new Set(['settled', 'duplicate', 'conflict', 'rejected', 'accepted']);

interface Pending {
  readonly hash: string;
  readonly bytes: Uint8Array;
  readonly uploaded: boolean;
}

/**
 * Uploads each item not yet uploaded until the cloud stops answering; returns how many went
 * home, how many wait, and whether the cloud was unreachable. A typed refusal (4xx, e.g. an
 * unknown voucher) stays pending: the gateway's own copy may settle it first.
 */
async function uploadEach<T extends Pending>(
  items: readonly T[],
  upload: (bytes: Uint8Array) => Promise<{ readonly status?: string }>,
  isFinal: (status: string | undefined) => boolean,
  markUploaded: (hash: string, status: string | undefined) => Promise<void>,
  offlineAlready: boolean,
): Promise<{ uploaded: number; pending: number; offline: boolean }> {
  let uploaded = 0;
  let pending = 0;
  let offline = offlineAlready;
  for (const item of items) {
    if (item.uploaded) continue;
    if (offline) {
      pending++;
      continue;
    }
    try {
      const outcome = await upload(item.bytes);
      if (isFinal(outcome.status)) {
        await markUploaded(item.hash, outcome.status);
        uploaded++;
      } else pending++;
    } catch (err) {
      pending++;
      if ((err as { offline?: boolean }).offline) offline = true;
    }
  }
  return { uploaded, pending, offline };
}

export async function uploadPending(cloud: CloudClient, store: PhoneStore): Promise<SyncOutcome> {
  const receipts = await uploadEach(
    await store.receipts(),
    (bytes) => cloud.uploadReceipt(bytes),
    (status) => status !== undefined && FINAL_RECEIPT_STATUSES.has(status),
    (hash, status) => store.markReceiptUploaded(hash, status),
    false,
  );
  const reports = await uploadEach(
    await store.reports(),
    (bytes) => cloud.uploadReport(bytes),
    () => true,
    (hash) => store.markReportUploaded(hash),
    receipts.offline,
  );
  let offline = reports.offline;
  let bundles = 0;
  if (!offline) {
    const gateways = new Set((await store.vouchers()).map((v) => v.gatewayId));
    for (const gatewayId of gateways) {
      try {
        const { bundle, version } = await cloud.bundle(gatewayId);
        await store.putBundle({ gatewayId, bundle, version, fetchedAt: Math.floor(Date.now() / 1000) });
        bundles++;
      } catch (err) {
        if ((err as { offline?: boolean }).offline) {
          offline = true;
          break;
        }
      }
    }
  }
  return {
    uploadedReceipts: receipts.uploaded,
    uploadedReports: reports.uploaded,
    pending: receipts.pending + reports.pending,
    bundles,
    offline,
  };
}
