/**
 * Reading the whole ledger back: `verifyLedger` recomputes the hash chain from genesis and
 * cross-checks the tables the gateway acts on against it; `exportRecords` prints every record
 * as JSON-friendly objects for `ledger export`. Both read in batches so that a long ledger
 * never holds a statement open across a caller's other ledger calls.
 *
 * What verification catches: a changed, inserted, deleted or reordered record (sequence gap,
 * prev_hash or hash mismatch); a receipt whose signed sequence is not its record's sequence or
 * whose previousReceiptHash is not the previous receipt's hash (even if the attacker rewrote
 * the chain hashes); a spent mark, receipt or attestation row without its record, or a spend
 * record without its spent mark (deleting a spent mark would allow a second spend).
 * What it cannot catch alone: records cut off the end together with everything referring to
 * them — the report checkpoints sent to the cloud are the external anchor for that.
 * @module
 */

import type Database from 'better-sqlite3';
import { equalBytes, toHex } from '../../../shared/src/bytes.ts';
import { GENESIS_RECEIPT_HASH, parseReceipt } from '../../../shared/src/messages/receipt.ts';
import {
  decodeBundlePayload,
  decodeSpendPayload,
  GENESIS_HASH,
  isRecordKind,
  jsonFriendly,
  recordHash,
  sha256,
  tryDecodeCbor,
} from './chain.ts';

export type VerifyResult =
  | {
      readonly ok: true;
      readonly records: number;
      readonly head: { readonly sequence: number; readonly hash: Uint8Array };
    }
  | { readonly ok: false; readonly sequence: number; readonly reason: string };

export interface ExportedRecord {
  readonly sequence: number;
  readonly kind: string;
  /** Gateway working clock, Unix s (not covered by the hash). */
  readonly at: number;
  readonly prevHash: string;
  readonly hash: string;
  /** The exact payload, hex. */
  readonly payload: string;
  /** The payload decoded for reading, when it decodes. */
  readonly content?: unknown;
}

interface RecordRow {
  seq: number;
  kind: string;
  at: number;
  payload: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
}

const BATCH = 512;

function* recordRows(db: Database.Database): Generator<RecordRow> {
  const page = db.prepare<[number, number], RecordRow>(
    'SELECT seq, kind, at, payload, prev_hash, hash FROM records WHERE seq > ? ORDER BY seq LIMIT ?',
  );
  let after = 0;
  for (;;) {
    const rows = page.all(after, BATCH);
    yield* rows;
    const last = rows.at(-1);
    if (!last || rows.length < BATCH) return;
    after = last.seq;
  }
}

function failure(sequence: number, reason: string): VerifyResult {
  return { ok: false, sequence, reason };
}

export function verifyLedger(db: Database.Database): VerifyResult {
  // One read transaction: a consistent snapshot even if another connection writes meanwhile.
  return db.transaction(() => verifySnapshot(db))();
}

function verifySnapshot(db: Database.Database): VerifyResult {
  const spentMark = db.prepare<[Uint8Array], { spend_seq: number }>(
    'SELECT spend_seq FROM spent_vouchers WHERE cti = ?',
  );
  const sessionOf = db.prepare<[Uint8Array], { cti: Buffer; receipt_seq: number | null }>(
    'SELECT cti, receipt_seq FROM sessions WHERE session_id = ?',
  );
  const outboxRow = db.prepare<[number], { hash: Buffer; bytes: Buffer }>(
    'SELECT hash, bytes FROM receipts WHERE sequence = ?',
  );

  let expectedSequence = 1;
  let prevHash: Uint8Array = GENESIS_HASH;
  let prevReceiptHash: Uint8Array = GENESIS_RECEIPT_HASH;
  for (const row of recordRows(db)) {
    const seq = row.seq;
    if (seq !== expectedSequence) return failure(expectedSequence, `record ${expectedSequence} is missing`);
    if (!isRecordKind(row.kind)) return failure(seq, `unknown record kind ${JSON.stringify(row.kind)}`);
    if (!equalBytes(row.prev_hash, prevHash))
      return failure(seq, "prev_hash is not the previous record's hash");
    const hash = recordHash(prevHash, seq, row.kind, row.payload);
    if (!equalBytes(row.hash, hash)) return failure(seq, 'hash does not match the record');

    if (row.kind === 'spend') {
      let spend: { cti: Uint8Array; sessionId: Uint8Array };
      try {
        spend = decodeSpendPayload(row.payload);
      } catch (error) {
        return failure(seq, `spend payload does not decode: ${(error as Error).message}`);
      }
      if (spentMark.get(spend.cti)?.spend_seq !== seq)
        return failure(seq, 'spent mark missing for this spend');
      const session = sessionOf.get(spend.sessionId);
      if (!session || !equalBytes(session.cti, spend.cti))
        return failure(seq, 'session missing for this spend');
    } else if (row.kind === 'receipt') {
      let body: ReturnType<typeof parseReceipt>['body'];
      try {
        body = parseReceipt(row.payload).body;
      } catch (error) {
        return failure(seq, `receipt does not parse: ${(error as Error).message}`);
      }
      if (body.sequence !== seq) return failure(seq, `receipt carries sequence ${body.sequence}`);
      if (!equalBytes(body.previousReceiptHash, prevReceiptHash)) {
        return failure(seq, "receipt's previousReceiptHash is not the previous receipt's hash");
      }
      const receiptHash = sha256(row.payload);
      const outbox = outboxRow.get(seq);
      if (!outbox || !equalBytes(outbox.bytes, row.payload) || !equalBytes(outbox.hash, receiptHash)) {
        return failure(seq, 'receipt outbox row differs from the record');
      }
      if (sessionOf.get(body.sessionId)?.receipt_seq !== seq)
        return failure(seq, 'session not closed by this receipt');
      prevReceiptHash = receiptHash;
    } else if (row.kind === 'bundle') {
      try {
        decodeBundlePayload(row.payload);
      } catch (error) {
        return failure(seq, `bundle payload does not decode: ${(error as Error).message}`);
      }
    }
    prevHash = hash;
    expectedSequence = seq + 1;
  }
  const records = expectedSequence - 1;

  // Rows the gateway acts on must each rest on a record of the right kind.
  const orphans: readonly [string, string][] = [
    [
      'spent mark',
      "SELECT spend_seq AS seq FROM spent_vouchers WHERE spend_seq NOT IN (SELECT seq FROM records WHERE kind = 'spend')",
    ],
    [
      'outbox receipt',
      "SELECT sequence AS seq FROM receipts WHERE sequence NOT IN (SELECT seq FROM records WHERE kind = 'receipt')",
    ],
    [
      'attestation',
      "SELECT ledger_seq AS seq FROM attestations WHERE ledger_seq NOT IN (SELECT seq FROM records WHERE kind = 'bundle')",
    ],
    [
      'installed bundle',
      "SELECT bundle_seq AS seq FROM installed_bundle WHERE bundle_seq NOT IN (SELECT seq FROM records WHERE kind = 'bundle')",
    ],
  ];
  for (const [what, sql] of orphans) {
    const orphan = db.prepare<[], { seq: number }>(`${sql} ORDER BY 1 LIMIT 1`).get();
    if (orphan)
      return failure(orphan.seq, `${what} refers to record ${orphan.seq}, which is not in the chain`);
  }
  return { ok: true, records, head: { sequence: records, hash: new Uint8Array(prevHash) } };
}

/** Every record, oldest first; `content` decodes spend/bundle/receipt (and CBOR boot/recover). */
export function* exportRecords(db: Database.Database): Generator<ExportedRecord> {
  for (const row of recordRows(db)) {
    yield {
      sequence: row.seq,
      kind: row.kind,
      at: row.at,
      prevHash: toHex(row.prev_hash),
      hash: toHex(row.hash),
      payload: toHex(row.payload),
      content: describePayload(row.kind, row.payload),
    };
  }
}

function describePayload(kind: string, payload: Uint8Array): unknown {
  try {
    if (kind === 'receipt')
      return { hash: toHex(sha256(payload)), body: jsonFriendly(parseReceipt(payload).body) };
    if (kind === 'bundle') return jsonFriendly(decodeBundlePayload(payload));
  } catch {
    return undefined; // verify() reports it; export still prints the raw payload
  }
  return tryDecodeCbor(payload);
}
