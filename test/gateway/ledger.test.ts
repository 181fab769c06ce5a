/**
 * The gateway ledger on SQLite: state survives close/reopen and SIGKILL; openSession is all or
 * nothing (a second spend, a revoked voucher, a busy connector or a constraint failure midway
 * change nothing); receipts take the next ledger sequence and link to the previous receipt,
 * and a stale link is refused; verify() passes on a good ledger and catches a changed byte, a
 * deleted record, a reordered or re-signed receipt link and a deleted spent mark; bundles
 * replace revocations and attest spent-before-install; the time floor only rises via raise;
 * WAL and synchronous=FULL are in force.
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { recordHash, revocationHashOf, sha256 } from '../../gateway/src/ledger/chain.ts';
import {
  Ledger,
  type LedgerNewSession,
  type LedgerSessionRecord,
  type ReceiptLink,
  StaleReceiptLinkError,
} from '../../gateway/src/ledger/ledger.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  chargedAmount,
  computeFee,
  ErrorCode,
  GENESIS_RECEIPT_HASH,
  ProtocolError,
  parseReceipt,
  revocationHash,
  type SigningKey,
  StopReason,
  signReceipt,
  toHex,
  utf8,
} from '../../shared/src/index.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CRASH_CHILD = fileURLToPath(new URL('./fixtures/ledger-crash-child.ts', import.meta.url));
const T0 = 1_795_000_000; // fixed gateway working-clock time, Unix s
const TARIFF = { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 };

let gatewayKey: SigningKey;
const gatewayKid = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
beforeAll(async () => {
  gatewayKey = await nodeCrypto.generateSigningKey();
});

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A fresh ledger in its own temp directory, closed and removed after the test. */
function tempLedgerPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-ledger-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // A subdirectory that does not exist yet: open must create it.
  return join(dir, 'state', 'ledger.db');
}

function openLedger(path: string, now: () => number = () => T0): Ledger {
  const ledger = Ledger.open(path, { now });
  cleanups.push(() => ledger.close());
  return ledger;
}

/** A raw connection for tampering, as an attacker with the SD card would have. */
function rawDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('foreign_keys = OFF');
  cleanups.push(() => db.close());
  return db;
}

function newSession(overrides: Partial<LedgerNewSession> = {}): LedgerNewSession {
  return {
    sessionId: nodeCrypto.randomBytes(16),
    cti: nodeCrypto.randomBytes(16),
    connector: 1,
    voucherBytes: nodeCrypto.randomBytes(180),
    deviceKey: Uint8Array.of(2, ...nodeCrypto.randomBytes(32)),
    holdAmount: 5_000,
    currency: 'CNY',
    tariff: TARIFF,
    deviceSignature: nodeCrypto.randomBytes(64),
    transcriptDigest: nodeCrypto.randomBytes(32),
    meterId: 'METER-1',
    meterStartWh: 10_000,
    startedAt: T0,
    proofVersion: 1,
    helloBytes: nodeCrypto.randomBytes(150),
    phoneEphemeralKey: Uint8Array.of(3, ...nodeCrypto.randomBytes(32)),
    ...overrides,
  };
}

async function receiptFor(
  session: LedgerSessionRecord,
  link: ReceiptLink,
  energyWh = 7_000,
  durationSeconds = 3_600,
): Promise<Uint8Array> {
  const receipt = await signReceipt(gatewayKey, gatewayKid, {
    cti: session.cti,
    sessionId: session.sessionId,
    gatewayId: 'gw-test-01',
    connector: session.connector,
    meterId: session.meterId,
    meterStartWh: session.meterStartWh,
    meterStopWh: session.meterStartWh + energyWh,
    startedAt: session.startedAt,
    stoppedAt: session.startedAt + durationSeconds,
    energyWh,
    tariff: session.tariff,
    computedAmount: computeFee(session.tariff, energyWh, durationSeconds),
    chargedAmount: chargedAmount(session.tariff, energyWh, durationSeconds, session.holdAmount),
    currency: session.currency,
    proof: {
      deviceSignature: session.deviceSignature,
      version: session.proofVersion,
      helloBytes: session.helloBytes,
      phoneEphemeralKey: session.phoneEphemeralKey,
    },
    sequence: link.sequence,
    previousReceiptHash: link.previousReceiptHash,
    stopReason: StopReason.DRIVER_REQUEST,
  });
  return receipt.bytes;
}

/** Opens and closes a session with a signed receipt, as the gateway's charging module would. */
async function chargeOnce(ledger: Ledger, overrides: Partial<LedgerNewSession> = {}) {
  const session = ledger.openSession(newSession(overrides));
  const link = ledger.nextReceiptLink();
  const bytes = await receiptFor(session, link);
  return { session, link, bytes, stored: ledger.closeSession(session.sessionId, bytes, link) };
}

/** Row counts of every table, read over a separate connection (what is really on disk). */
function tableCounts(path: string): Record<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    const counts: Record<string, number> = {};
    for (const table of [
      'records',
      'spent_vouchers',
      'sessions',
      'receipts',
      'installed_bundle',
      'revocations',
      'attestations',
    ]) {
      counts[table] = (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    }
    return counts;
  } finally {
    db.close();
  }
}

/** Recomputes every chain hash after tampering, as an attacker hiding an edit would. */
function rechain(db: Database.Database): void {
  const rows = db.prepare('SELECT seq, kind, payload FROM records ORDER BY seq').all() as {
    seq: number;
    kind: 'spend' | 'receipt' | 'bundle' | 'boot' | 'recover';
    payload: Buffer;
  }[];
  const update = db.prepare('UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?');
  let prev: Uint8Array = new Uint8Array(32);
  for (const row of rows) {
    const hash = recordHash(prev, row.seq, row.kind, row.payload);
    update.run(prev, hash, row.seq);
    prev = hash;
  }
}

function expectProtocolError(fn: () => unknown, code: ErrorCode): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).code).toBe(code);
    return;
  }
  throw new Error(`expected ProtocolError ${code}`);
}

describe('ledger: storage', () => {
  it('runs in WAL mode with synchronous=FULL and foreign keys on', () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    expect(ledger.storageSettings()).toEqual({
      journalMode: 'wal',
      synchronous: 2, // FULL
      foreignKeys: true,
      busyTimeoutMs: 5_000,
      schemaVersion: 1,
    });
    // journal_mode is a property of the file: any other connection sees it too.
    const other = new Database(path, { readonly: true });
    expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
    other.close();
  });

  it('keeps every kind of state across close and reopen', async () => {
    const path = tempLedgerPath();
    const first = Ledger.open(path, { now: () => T0 });
    first.appendRecord('boot', utf8('v0.1.0'));
    const closed = await chargeOnce(first);
    const open = first.openSession(newSession({ connector: 2 }));
    first.updateMeter(open.sessionId, 12_345, T0 + 60);
    first.installBundle(7, utf8('bundle-7'), [revocationHashOf(utf8('some other cti'))]);
    first.raiseTimeFloor(T0 + 100);
    const head = first.head();
    first.close();
    first.close(); // idempotent

    const again = openLedger(path);
    expect(again.head()).toEqual(head);
    expect(again.isSpent(closed.session.cti)).toBe(true);
    expect(again.isSpent(open.cti)).toBe(true);
    expect(again.sessionByCti(closed.session.cti)).toMatchObject({ state: 'closed', receipt: closed.bytes });
    expect(again.openSessions()).toMatchObject([{ sessionId: open.sessionId, lastMeterWh: 12_345 }]);
    expect(again.sessionById(open.sessionId)).toEqual({ ...open, lastMeterWh: 12_345, lastMeterAt: T0 + 60 });
    expect(again.installedBundle()).toEqual({ version: 7, bytes: utf8('bundle-7') });
    expect(again.isRevoked(revocationHashOf(utf8('some other cti')))).toBe(true);
    expect(again.timeFloor()).toBe(T0 + 100);
    expect(again.pendingReceipts(10).map((r) => r.bytes)).toEqual([closed.bytes]);
    expect(again.nextReceiptLink()).toEqual({
      sequence: head.sequence + 1,
      previousReceiptHash: closed.stored.hash,
    });
    expect(again.verify()).toMatchObject({ ok: true, records: head.sequence });
  });

  it('refuses a file written by a newer schema', () => {
    const path = tempLedgerPath();
    openLedger(path).close();
    const db = rawDb(path);
    db.prepare("UPDATE meta SET value = 99 WHERE key = 'schema_version'").run();
    db.close();
    expect(() => Ledger.open(path)).toThrow(/schema version 99 is newer/);
  });
});

describe('ledger: openSession is atomic and single-use', () => {
  it('spends a voucher once; a second spend throws VOUCHER_SPENT and changes nothing', () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    const input = newSession();
    const session = ledger.openSession(input);
    expect(session).toMatchObject({ state: 'open', lastMeterWh: input.meterStartWh, lastMeterAt: T0 });
    expect(ledger.isSpent(input.cti)).toBe(true);
    expect(ledger.sessionByCti(input.cti)?.sessionId).toEqual(input.sessionId);
    expect(ledger.head().sequence).toBe(1);

    const before = { counts: tableCounts(path), head: ledger.head() };
    // Same voucher again, even on another connector after the first session closed.
    expectProtocolError(
      () => ledger.openSession({ ...input, sessionId: nodeCrypto.randomBytes(16) }),
      ErrorCode.VOUCHER_SPENT,
    );
    expectProtocolError(() => ledger.openSession({ ...input, connector: 2 }), ErrorCode.VOUCHER_SPENT);
    expect({ counts: tableCounts(path), head: ledger.head() }).toEqual(before);
  });

  it('a failure midway (constraint violation after the spend record and spent mark) writes nothing', () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    const first = ledger.openSession(newSession());
    const before = { counts: tableCounts(path), head: ledger.head() };

    // A fresh voucher reusing the session id: the record and spent mark insert, the session
    // row violates the primary key, and the transaction must roll the first two back.
    const clash = newSession({ sessionId: first.sessionId, connector: 2 });
    expect(() => ledger.openSession(clash)).toThrow(/UNIQUE constraint failed: sessions.session_id/);
    expect(ledger.isSpent(clash.cti)).toBe(false);
    expect({ counts: tableCounts(path), head: ledger.head() }).toEqual(before);
    expect(ledger.verify()).toMatchObject({ ok: true, records: 1 });

    // The voucher was not burnt: it can still start its session.
    expect(ledger.openSession({ ...clash, sessionId: nodeCrypto.randomBytes(16) }).state).toBe('open');
  });

  it('refuses a connector that already runs a session, and a revoked voucher, writing nothing', () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    ledger.openSession(newSession({ connector: 1 }));
    const revoked = newSession({ connector: 2 });
    ledger.installBundle(1, utf8('b1'), [revocationHashOf(revoked.cti)]);
    const before = { counts: tableCounts(path), head: ledger.head() };
    const busy = newSession({ connector: 1 });
    expectProtocolError(() => ledger.openSession(busy), ErrorCode.CONNECTOR_BUSY);
    expectProtocolError(() => ledger.openSession(revoked), ErrorCode.VOUCHER_REVOKED);
    expect({ counts: tableCounts(path), head: ledger.head() }).toEqual(before);
    expect(ledger.isSpent(busy.cti) || ledger.isSpent(revoked.cti)).toBe(false);
  });

  it('meter readings overwrite the last one, only on open sessions', async () => {
    const ledger = openLedger(tempLedgerPath());
    const session = ledger.openSession(newSession());
    const head = ledger.head();
    expect(ledger.updateMeter(session.sessionId, 10_500, T0 + 30)).toBe(true);
    expect(ledger.updateMeter(session.sessionId, 10_900, T0 + 60)).toBe(true);
    expect(ledger.sessionById(session.sessionId)).toMatchObject({
      lastMeterWh: 10_900,
      lastMeterAt: T0 + 60,
    });
    expect(ledger.head()).toEqual(head); // not chained
    expect(ledger.updateMeter(nodeCrypto.randomBytes(16), 1, T0)).toBe(false);
    const link = ledger.nextReceiptLink();
    ledger.closeSession(session.sessionId, await receiptFor(session, link, 1_000, 120), link);
    expect(ledger.updateMeter(session.sessionId, 99_999, T0 + 999)).toBe(false);
    // Closing records the receipt's final reading.
    expect(ledger.sessionById(session.sessionId)).toMatchObject({
      lastMeterWh: 11_000,
      lastMeterAt: T0 + 120,
    });
  });
});

describe('ledger: receipt chain', () => {
  it('each receipt takes the next ledger sequence and links to the previous receipt', async () => {
    const ledger = openLedger(tempLedgerPath());
    ledger.appendRecord('boot', utf8('start')); // 1
    const a = ledger.openSession(newSession({ connector: 1 })); // 2
    const b = ledger.openSession(newSession({ connector: 2 })); // 3

    const linkA = ledger.nextReceiptLink();
    expect(linkA).toEqual({ sequence: 4, previousReceiptHash: GENESIS_RECEIPT_HASH });
    const bytesA = await receiptFor(a, linkA);
    const storedA = ledger.closeSession(a.sessionId, bytesA, linkA);
    expect(storedA).toEqual({ sequence: 4, hash: sha256(bytesA), bytes: bytesA });
    expect(ledger.head().sequence).toBe(4);

    const linkB = ledger.nextReceiptLink();
    expect(linkB).toEqual({ sequence: 5, previousReceiptHash: storedA.hash });
    const bytesB = await receiptFor(b, linkB);
    const storedB = ledger.closeSession(b.sessionId, bytesB, linkB);
    expect(parseReceipt(bytesB).body).toMatchObject({ sequence: 5, previousReceiptHash: storedA.hash });
    expect(ledger.receiptCheckpoint()).toEqual({ sequence: 5, head: storedB.hash });

    // The attaching phone finds its receipt by cti.
    expect(ledger.sessionByCti(a.cti)).toMatchObject({ state: 'closed', receipt: bytesA });
    expect(ledger.openSessions()).toEqual([]);
    expect(ledger.verify()).toMatchObject({ ok: true, records: 5 });
  });

  it('closeSession refuses a stale link and writes nothing; a fresh link and signature work', async () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    const first = await chargeOnce(ledger, { connector: 1 });
    const session = ledger.openSession(newSession({ connector: 2 }));

    const link = ledger.nextReceiptLink();
    const bytes = await receiptFor(session, link);
    ledger.appendRecord('boot', utf8('something appended while signing'));
    const before = { counts: tableCounts(path), head: ledger.head() };
    expect(() => ledger.closeSession(session.sessionId, bytes, link)).toThrow(StaleReceiptLinkError);
    // A reused old link (sequence right, previous hash wrong) is stale too.
    const wrongPrevious = { sequence: ledger.head().sequence + 1, previousReceiptHash: GENESIS_RECEIPT_HASH };
    const wrongPreviousBytes = await receiptFor(session, wrongPrevious);
    expect(() => ledger.closeSession(session.sessionId, wrongPreviousBytes, wrongPrevious)).toThrow(
      /previous receipt hash/,
    );
    expect({ counts: tableCounts(path), head: ledger.head() }).toEqual(before);
    expect(ledger.sessionById(session.sessionId)?.state).toBe('open');

    // Bytes that do not carry the link they are given, or belong to another session.
    const fresh = ledger.nextReceiptLink();
    expect(fresh.previousReceiptHash).toEqual(first.stored.hash);
    expect(() => ledger.closeSession(session.sessionId, bytes, fresh)).toThrow(/do not carry the given link/);
    const otherSessions = await receiptFor(first.session, fresh);
    expect(() => ledger.closeSession(session.sessionId, otherSessions, fresh)).toThrow(/another session/);

    const good = await receiptFor(session, fresh);
    expect(ledger.closeSession(session.sessionId, good, fresh).sequence).toBe(fresh.sequence);
    // Closed sessions and unknown ones.
    const next = ledger.nextReceiptLink();
    expectProtocolError(() => ledger.closeSession(session.sessionId, good, next), ErrorCode.SESSION_CLOSED);
    expectProtocolError(
      () => ledger.closeSession(nodeCrypto.randomBytes(16), good, next),
      ErrorCode.NO_SUCH_SESSION,
    );
    expect(ledger.verify().ok).toBe(true);
  });

  it('the outbox gives pending receipts oldest first until acknowledged', async () => {
    const ledger = openLedger(tempLedgerPath());
    const receipts = [];
    for (let i = 0; i < 4; i++) receipts.push((await chargeOnce(ledger)).stored);
    expect(ledger.pendingReceiptCount()).toBe(4);
    expect(ledger.pendingReceipts(2)).toEqual(receipts.slice(0, 2));
    expect(ledger.pendingReceipts(10, receipts[1]!.sequence)).toEqual(receipts.slice(2));

    expect(ledger.acknowledgeReceipts([receipts[0]!.hash, receipts[2]!.hash, new Uint8Array(32)])).toBe(2);
    expect(ledger.acknowledgeReceipts([receipts[0]!.hash])).toBe(0); // idempotent
    expect(ledger.pendingReceipts(10).map((r) => r.sequence)).toEqual([
      receipts[1]!.sequence,
      receipts[3]!.sequence,
    ]);
    expect(ledger.acknowledgeReceiptsUpTo(receipts[3]!.sequence)).toBe(2);
    expect(ledger.pendingReceiptCount()).toBe(0);
    // Acknowledged receipts stay in the chain and with their sessions.
    expect(ledger.verify().ok).toBe(true);
  });
});

describe('ledger: verify() detects tampering', () => {
  async function ledgerWithHistory() {
    const path = tempLedgerPath();
    const ledger = Ledger.open(path, { now: () => T0 });
    ledger.appendRecord('boot', utf8('boot')); // 1
    const a = await chargeOnce(ledger, { connector: 1 }); // spend 2, receipt 3
    ledger.installBundle(1, utf8('bundle'), []); // 4
    const b = await chargeOnce(ledger, { connector: 2 }); // spend 5, receipt 6
    const verdict = ledger.verify();
    ledger.close();
    expect(verdict).toMatchObject({ ok: true, records: 6 });
    return { path, a, b };
  }

  function verifyFile(path: string) {
    return openLedger(path).verify();
  }

  it('a changed payload byte', async () => {
    const { path } = await ledgerWithHistory();
    const db = rawDb(path);
    const payload = (db.prepare('SELECT payload FROM records WHERE seq = 2').get() as { payload: Buffer })
      .payload;
    payload[payload.length - 1]! ^= 0x01;
    db.prepare('UPDATE records SET payload = ? WHERE seq = 2').run(payload);
    db.close();
    expect(verifyFile(path)).toEqual({ ok: false, sequence: 2, reason: 'hash does not match the record' });
  });

  it('a deleted record', async () => {
    const { path } = await ledgerWithHistory();
    const db = rawDb(path);
    db.prepare('DELETE FROM records WHERE seq = 1').run();
    db.close();
    expect(verifyFile(path)).toEqual({ ok: false, sequence: 1, reason: 'record 1 is missing' });
  });

  it('a deleted record even when the chain after it is rewritten', async () => {
    const { path } = await ledgerWithHistory();
    const db = rawDb(path);
    db.prepare('DELETE FROM records WHERE seq = 4').run();
    rechain(db);
    db.close();
    expect(verifyFile(path)).toMatchObject({ ok: false, sequence: 4, reason: 'record 4 is missing' });
  });

  it('a reordered receipt link, even with the chain hashes and outbox rewritten', async () => {
    const { path, a, b } = await ledgerWithHistory();
    const db = rawDb(path);
    // Swap the two receipts everywhere: records, outbox and sessions.
    db.prepare('UPDATE records SET payload = ? WHERE seq = ?').run(b.bytes, a.stored.sequence);
    db.prepare('UPDATE records SET payload = ? WHERE seq = ?').run(a.bytes, b.stored.sequence);
    const setReceipt = db.prepare('UPDATE receipts SET hash = ?, bytes = ? WHERE sequence = ?');
    setReceipt.run(new Uint8Array(32), a.bytes, 3); // hashes are unique: park one first
    setReceipt.run(a.stored.hash, a.bytes, 6);
    setReceipt.run(b.stored.hash, b.bytes, 3);
    const setSession = db.prepare('UPDATE sessions SET receipt_seq = ? WHERE session_id = ?');
    setSession.run(-1, a.session.sessionId);
    setSession.run(3, b.session.sessionId);
    setSession.run(6, a.session.sessionId);
    rechain(db);
    db.close();
    expect(verifyFile(path)).toEqual({ ok: false, sequence: 3, reason: 'receipt carries sequence 6' });
  });

  it('a receipt re-signed at the right sequence with a wrong previous hash', async () => {
    const { path, b } = await ledgerWithHistory();
    const forged = await receiptFor(b.session, { sequence: 6, previousReceiptHash: GENESIS_RECEIPT_HASH });
    const db = rawDb(path);
    db.prepare('UPDATE records SET payload = ? WHERE seq = 6').run(forged);
    db.prepare('UPDATE receipts SET hash = ?, bytes = ? WHERE sequence = 6').run(sha256(forged), forged);
    rechain(db);
    db.close();
    expect(verifyFile(path)).toEqual({
      ok: false,
      sequence: 6,
      reason: "receipt's previousReceiptHash is not the previous receipt's hash",
    });
  });

  it('a deleted spent mark (which would let the voucher start again)', async () => {
    const { path, a } = await ledgerWithHistory();
    const db = rawDb(path);
    db.prepare('DELETE FROM spent_vouchers WHERE cti = ?').run(a.session.cti);
    db.close();
    expect(verifyFile(path)).toEqual({ ok: false, sequence: 2, reason: 'spent mark missing for this spend' });
  });

  it('an outbox receipt that differs from its record', async () => {
    const { path, b } = await ledgerWithHistory();
    const db = rawDb(path);
    db.prepare('UPDATE receipts SET bytes = ? WHERE sequence = 6').run(Uint8Array.of(...b.bytes, 0));
    db.close();
    expect(verifyFile(path)).toMatchObject({
      ok: false,
      sequence: 6,
      reason: 'receipt outbox row differs from the record',
    });
  });
});

describe('ledger: bundles and revocations', () => {
  it('install replaces the revocation set, attests spent-before-install and refuses old versions', async () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    const spent = ledger.openSession(newSession());
    const spentHash = revocationHashOf(spent.cti);
    expect(spentHash).toEqual(await revocationHash(nodeCrypto, spent.cti)); // same as the protocol's
    const h1 = revocationHashOf(utf8('cti-1'));
    const h2 = revocationHashOf(utf8('cti-2'));
    const h3 = revocationHashOf(utf8('cti-3'));

    expect(ledger.installedBundle()).toBeUndefined();
    const seq1 = ledger.installBundle(1, utf8('bundle-1'), [h1, h2, spentHash, h1]);
    expect(seq1).toBe(ledger.head().sequence);
    expect([h1, h2, spentHash].map((h) => ledger.isRevoked(h))).toEqual([true, true, true]);

    const seq2 = ledger.installBundle(2, utf8('bundle-2'), [h3]);
    expect([h1, h2, spentHash, h3].map((h) => ledger.isRevoked(h))).toEqual([false, false, false, true]);
    expect(ledger.installedBundle()).toEqual({ version: 2, bytes: utf8('bundle-2') });
    expect(ledger.revocationAttestations()).toEqual([
      { bundleVersion: 2, ledgerSequence: seq2, spentBeforeInstall: [] },
      { bundleVersion: 1, ledgerSequence: seq1, spentBeforeInstall: [spentHash] },
    ]);

    const before = { counts: tableCounts(path), head: ledger.head() };
    expectProtocolError(() => ledger.installBundle(2, utf8('again'), [h1]), ErrorCode.BUNDLE_OUTDATED);
    expectProtocolError(() => ledger.installBundle(1, utf8('older'), [h1]), ErrorCode.BUNDLE_OUTDATED);
    expect({ counts: tableCounts(path), head: ledger.head() }).toEqual(before);
    expect(ledger.isRevoked(h3)).toBe(true);

    const bundleRecord = [...ledger.export()].find((r) => r.sequence === seq1);
    expect(bundleRecord).toMatchObject({
      kind: 'bundle',
      content: { version: 1, revocationCount: 3, spentBeforeInstall: [toHex(spentHash)] },
    });
    expect(ledger.verify().ok).toBe(true);
  });

  it('keeps the latest 16 attestations', () => {
    const ledger = openLedger(tempLedgerPath());
    for (let version = 1; version <= 20; version++) ledger.installBundle(version, utf8(`b${version}`), []);
    const attestations = ledger.revocationAttestations();
    expect(attestations.map((a) => a.bundleVersion)).toEqual(Array.from({ length: 16 }, (_, i) => 20 - i));
    expect(ledger.verify().ok).toBe(true);
  });
});

describe('ledger: trusted time floor', () => {
  it('raise never lowers it; set may (nonce-bound cloud time); it persists', () => {
    const path = tempLedgerPath();
    const ledger = openLedger(path);
    expect(ledger.timeFloor()).toBe(0);
    expect(ledger.raiseTimeFloor(T0)).toBe(T0);
    expect(ledger.raiseTimeFloor(T0 - 3_600)).toBe(T0);
    expect(ledger.raiseTimeFloor(T0 + 5)).toBe(T0 + 5);
    ledger.setTimeFloor(T0 - 86_400);
    expect(ledger.timeFloor()).toBe(T0 - 86_400);
    expect(() => ledger.raiseTimeFloor(-1)).toThrow(RangeError);
    expect(() => ledger.raiseTimeFloor(1.5)).toThrow(RangeError);
    ledger.close();
    expect(openLedger(path).timeFloor()).toBe(T0 - 86_400);
  });
});

describe('ledger: export', () => {
  it('prints every record as JSON with bytes in hex', async () => {
    const ledger = openLedger(tempLedgerPath(), () => T0 + 42);
    ledger.appendRecord('boot', utf8('plain bytes'));
    const { session, stored } = await chargeOnce(ledger);
    const records = [...ledger.export()];
    expect(JSON.parse(JSON.stringify(records))).toEqual(records);
    expect(records.map((r) => r.kind)).toEqual(['boot', 'spend', 'receipt']);
    expect(records[0]).toMatchObject({
      sequence: 1,
      at: T0 + 42,
      prevHash: '00'.repeat(32),
      payload: toHex(utf8('plain bytes')),
    });
    expect(records[1]?.content).toMatchObject({
      cti: toHex(session.cti),
      connector: 1,
      meterStartWh: 10_000,
    });
    expect(records[2]?.content).toMatchObject({ hash: toHex(stored.hash), body: { sequence: 3 } });
    expect(records[2]?.hash).toBe(toHex(ledger.head().hash));
  });
});

describe('ledger: crash safety', () => {
  it('a process killed (SIGKILL) right after openSession leaves the spent mark and open session', async () => {
    const path = tempLedgerPath();
    const cti = nodeCrypto.randomBytes(16);
    const tsxLoader = pathToFileURL(createRequire(join(REPO_ROOT, 'package.json')).resolve('tsx')).href;
    const child = spawn(process.execPath, ['--import', tsxLoader, CRASH_CHILD, path, toHex(cti)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += String(chunk);
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk) => {
        if (String(chunk).includes('opened')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited (${code}) before opening: ${stderr}`)));
    });
    // Let it rewrite the meter for a moment so the kill lands mid-write.
    await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const ledger = openLedger(path);
    expect(ledger.isSpent(cti)).toBe(true);
    const [session, ...others] = ledger.openSessions();
    expect(others).toEqual([]);
    expect(session).toMatchObject({ cti, state: 'open', connector: 1, meterStartWh: 1_000 });
    expect(session!.lastMeterWh).toBeGreaterThan(1_000); // some meter writes landed too
    expect(ledger.verify()).toMatchObject({ ok: true, records: 2 });
    expectProtocolError(() => ledger.openSession(newSession({ cti, connector: 2 })), ErrorCode.VOUCHER_SPENT);
  });
});
