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

export async function uploadPending(cloud: CloudClient, store: PhoneStore): Promise<SyncOutcome> {
  let uploadedReceipts = 0;
  let uploadedReports = 0;
  let pending = 0;
  let offline = false;
  for (const receipt of await store.receipts()) {
    if (receipt.uploaded) continue;
    if (offline) {
      pending++;
      continue;
    }
    try {
      const outcome = await cloud.uploadReceipt(receipt.bytes);
      if (FINAL_RECEIPT_STATUSES.has(outcome.status)) {
        await store.markReceiptUploaded(receipt.hash);
        uploadedReceipts++;
      } else pending++;
    } catch (err) {
      pending++;
      if ((err as { offline?: boolean }).offline) offline = true;
      // A typed 4xx (e.g. unknown voucher) stays pending: the gateway's copy may settle it.
    }
  }
  for (const report of await store.reports()) {
    if (report.uploaded) continue;
    if (offline) {
      pending++;
      continue;
    }
    try {
      await cloud.uploadReport(report.bytes);
      await store.markReportUploaded(report.hash);
      uploadedReports++;
    } catch (err) {
      pending++;
      if ((err as { offline?: boolean }).offline) offline = true;
    }
  }
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
  return { uploadedReceipts, uploadedReports, pending, bundles, offline };
}
