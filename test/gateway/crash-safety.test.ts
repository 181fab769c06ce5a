/**
 * Crash safety of the gateway as real processes: the gateway CLI (`pilepass-gateway start
 * --ble socket:… --pile sim:…`) and the sim pile each run in their own process; phones are
 * PhoneSessions over the local socket transport (test/support/crash-station.ts).
 *
 * (a) Each named crash point (PILEPASS_CRASH_AT): a tap (and, for the receipt points, a stop)
 *     makes the gateway SIGKILL itself at that step; it is restarted without the variable and
 *     the invariants are checked, plus what that point must leave behind; and crashes inside
 *     start-up recovery itself (mid-receipt, after-receipt-commit while it closes a session).
 * (b) kill -9 at random times: PILEPASS_CRASH_RUNS runs (default 50) on one data dir and one
 *     sim pile, so state accumulates; a seeded PRNG draws the plan (taps, stops, holds, MTUs,
 *     delays; kills at random times or aimed at the few ms after a presentation or a stop
 *     request; sometimes a second kill during the restart) — PILEPASS_CRASH_SEED=<seed>
 *     replays the plan (timing still varies).
 *
 * Invariants after every kill and every restart (CrashModel): no voucher accepted twice (spent
 * vouchers re-presented get VOUCHER_SPENT; spent marks and sessions match one to one); no
 * receipt lost (receipts phones got, and closed sessions seen earlier, stay in the ledger
 * byte for byte; every closed session has a receipt); the chain verifies; no pile on without
 * an open session (sim pile process vs ledger); recovery leaves no session open on a pile that
 * is off. The soak version is scripts/soak-crash.ts.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrashPoint } from '../../gateway/src/charging/crash.ts';
import { ErrorCode, StopReason, toHex } from '../../shared/src/index.ts';
import {
  CrashModel,
  type CrashStation,
  checkAfterRestart,
  createCrashStation,
  createRng,
  describeRun,
  type LedgerSnapshot,
  phoneVisit,
  randomKillRun,
  seedFrom,
} from '../support/crash-station.ts';

describe('crash safety: named crash points (gateway and sim pile as processes)', () => {
  let station: CrashStation;
  let model: CrashModel;
  const rng = createRng(1);

  beforeAll(async () => {
    station = await createCrashStation();
    model = new CrashModel(station);
  });
  afterAll(async () => {
    await station?.dispose();
  });

  /** One tap at connector 1 that crashes the gateway at `point`; returns the phone's view. */
  async function crashingTap(point: CrashPoint, stopAfterMs?: number) {
    await station.startGateway({ crashAt: point });
    const voucher = await model.issue(5_000);
    const visit = phoneVisit(station, { voucher, connector: 1, stopAfterMs, mtu: 64 });
    const exit = await station.waitGatewayExit(15_000);
    expect(exit.signal).toBe('SIGKILL');
    const phone = await visit;
    model.recordPhones([phone], point);
    expect(phone.disconnected).toBe(true);
    expect(phone.receipt).toBeUndefined();
    const crashed = await model.checkLedger(`${point} (after the crash)`);
    const pile = await model.checkPile(`${point} (after the crash)`, crashed);
    return { voucher, phone, crashed, pile };
  }

  async function restart(point: string, spent: string[]): Promise<LedgerSnapshot> {
    await station.startGateway();
    return checkAfterRestart(model, rng, point, spent);
  }

  async function contactor(connector: number): Promise<{ on: boolean; meterWh: number }> {
    const r = await station.pileControl.read(connector);
    return { on: r.contactorOn, meterWh: r.meterWh };
  }

  /** Attaches with the voucher and returns the receipt the gateway hands out (stopping first if needed). */
  async function attachForReceipt(voucher: Awaited<ReturnType<CrashModel['issue']>>) {
    const phone = await phoneVisit(station, { voucher, connector: undefined, stopAfterMs: 0, maxMs: 5_000 });
    model.recordPhones([phone], 'attach');
    expect(phone.sawStatus).toBe(true);
    expect(phone.receipt).toBeDefined();
    return phone.receipt!;
  }

  it('after-spend-commit: spent and open, pile never started → recovery closes it with a zero receipt', async () => {
    const { voucher, phone, crashed } = await crashingTap(CrashPoint.AFTER_SPEND_COMMIT);
    expect(phone.sawStatus).toBe(false); // the gateway died before answering
    expect(crashed.spent.has(voucher.ctiHex)).toBe(true);
    expect(crashed.sessions.get(voucher.ctiHex)?.state).toBe('open');
    expect((await contactor(1)).on).toBe(false);

    const after = await restart(CrashPoint.AFTER_SPEND_COMMIT, [voucher.ctiHex]);
    const session = after.sessions.get(voucher.ctiHex);
    expect(session?.state).toBe('closed');
    const receipt = await attachForReceipt(voucher); // the phone fetches the receipt it missed
    expect(toHex(receipt.bytes)).toBe(toHex(session!.receipt!));
    expect(receipt.body.stopReason).toBe(StopReason.GATEWAY_RESTART);
    expect(receipt.body.energyWh).toBe(0);
    expect(receipt.body.chargedAmount).toBe(0);
    await station.stopGateway();
  });

  it('after-start-command: pile on with its session open → recovery resumes it; the phone attaches and stops', async () => {
    const { voucher, crashed, pile } = await crashingTap(CrashPoint.AFTER_START_COMMAND);
    expect(crashed.sessions.get(voucher.ctiHex)?.state).toBe('open');
    expect(pile.connectors.find((c) => c.connector === 1)?.contactorOn).toBe(true);

    const after = await restart(CrashPoint.AFTER_START_COMMAND, [voucher.ctiHex]);
    expect(after.sessions.get(voucher.ctiHex)?.state).toBe('open');
    expect((await contactor(1)).on).toBe(true); // resumed, not cut off: the driver paid for it
    const receipt = await attachForReceipt(voucher);
    expect(receipt.body.stopReason).toBe(StopReason.DRIVER_REQUEST);
    expect(receipt.body.energyWh).toBeGreaterThan(0); // energy from before and after the crash
    expect((await contactor(1)).on).toBe(false);
    await model.checkLedger('after-start-command (after the stop)');
    await station.stopGateway();
  });

  it('mid-receipt: pile stopped, receipt signed but not stored → recovery closes it from the pile register', async () => {
    const { voucher, phone, crashed } = await crashingTap(CrashPoint.MID_RECEIPT, 150);
    expect(phone.sawCharging && phone.stopSent).toBe(true);
    expect(crashed.sessions.get(voucher.ctiHex)?.state).toBe('open'); // the signed receipt died with the process
    const register = await contactor(1);
    expect(register.on).toBe(false);

    const after = await restart(CrashPoint.MID_RECEIPT, [voucher.ctiHex]);
    expect(after.sessions.get(voucher.ctiHex)?.state).toBe('closed');
    const receipt = await attachForReceipt(voucher);
    expect(receipt.body.stopReason).toBe(StopReason.GATEWAY_RESTART);
    expect(receipt.body.meterStopWh).toBe(register.meterWh); // every Wh delivered is billed
    expect(receipt.body.energyWh).toBeGreaterThan(0);
    await station.stopGateway();
  });

  it('after-receipt-commit: receipt stored, never sent → the phone fetches exactly that receipt after restart', async () => {
    const { voucher, phone, crashed } = await crashingTap(CrashPoint.AFTER_RECEIPT_COMMIT, 150);
    expect(phone.sawCharging && phone.stopSent).toBe(true);
    const stored = crashed.sessions.get(voucher.ctiHex);
    expect(stored?.state).toBe('closed');
    expect((await contactor(1)).on).toBe(false);

    const after = await restart(CrashPoint.AFTER_RECEIPT_COMMIT, [voucher.ctiHex]);
    expect(after.sessions.get(voucher.ctiHex)?.receiptHashHex).toBe(stored!.receiptHashHex);
    const receipt = await attachForReceipt(voucher);
    expect(toHex(receipt.bytes)).toBe(toHex(stored!.receipt!));
    expect(receipt.body.stopReason).toBe(StopReason.DRIVER_REQUEST);
    await station.stopGateway();
    const cli = await station.cliLedgerVerify();
    expect(cli.code, cli.stdout).toBe(0);
  });

  it('a crash inside start-up recovery, while it closes an interrupted session, is recovered by the next start', async () => {
    const { voucher } = await crashingTap(CrashPoint.AFTER_SPEND_COMMIT); // open session, pile off
    await expect(station.startGateway({ crashAt: CrashPoint.MID_RECEIPT })).rejects.toThrow(/SIGKILL/);
    let snap = await model.checkLedger('recovery crashed mid-receipt');
    expect(snap.sessions.get(voucher.ctiHex)?.state).toBe('open');
    await expect(station.startGateway({ crashAt: CrashPoint.AFTER_RECEIPT_COMMIT })).rejects.toThrow(
      /SIGKILL/,
    );
    snap = await model.checkLedger('recovery crashed after the receipt commit');
    const closed = snap.sessions.get(voucher.ctiHex);
    expect(closed?.state).toBe('closed');

    const after = await restart('recovery crashed twice', [voucher.ctiHex]);
    expect(after.sessions.get(voucher.ctiHex)?.receiptHashHex).toBe(closed!.receiptHashHex);
    const receipt = await attachForReceipt(voucher);
    expect(receipt.body.stopReason).toBe(StopReason.GATEWAY_RESTART);
    await station.stopGateway();
  });
});

const RUNS = Number(process.env.PILEPASS_CRASH_RUNS ?? 50);

describe('crash safety: kill -9 at random times', () => {
  let station: CrashStation;

  beforeAll(async () => {
    station = await createCrashStation();
  });
  afterAll(async () => {
    await station?.dispose();
  });

  it(`${RUNS} runs on one data dir and sim pile: invariants hold after every kill and restart`, async () => {
    const seed = seedFrom(process.env.PILEPASS_CRASH_SEED);
    console.log(`crash-safety: seed ${seed} (PILEPASS_CRASH_SEED=${seed} replays the plan)`);
    const rng = createRng(seed);
    const model = new CrashModel(station);
    const started = performance.now();
    await station.startGateway();
    let snapshot = await checkAfterRestart(model, rng, 'first start', []);
    let run = 0;
    try {
      for (run = 1; run <= RUNS; run++) {
        const out = await randomKillRun(model, rng, run, snapshot);
        snapshot = out.snapshot;
        if (process.env.PILEPASS_CRASH_VERBOSE) console.log(describeRun(out.report));
      }
      // Every voucher ever spent, re-presented to the last gateway: all refused.
      await model.checkSpentRefused('final', model.spentVouchers(), rng);
      await station.stopGateway();
      const final = await model.checkLedger('final (gateway stopped)');
      const cli = await station.cliLedgerVerify();
      expect(cli.code, cli.stdout).toBe(0);
      expect(final.verify.ok).toBe(true);
    } catch (error) {
      (error as Error).message +=
        `\n  seed ${seed}, run ${run} — replay with PILEPASS_CRASH_SEED=${seed}` +
        `\n  gateway stderr (tail):\n${station.gateway?.stderr().slice(-3_000) ?? '(not running)'}`;
      throw error;
    }
    const s = model.stats;
    console.log(
      `crash-safety: ${RUNS} kill -9 runs in ${((performance.now() - started) / 1000).toFixed(1)} s — ` +
        `${s.tokenTaps} taps, ${s.accepted} accepted, ${s.receiptsToPhones} receipts to phones, ` +
        `${s.receiptsInLedger} in the ledger, ${s.resumedByRecovery} sessions resumed and ` +
        `${s.closedByRecovery} closed after a crash, ${s.respentRefused} re-presentations refused, ` +
        `rejections ${JSON.stringify(s.rejected)}`,
    );
    expect(s.accepted).toBeGreaterThan(0);
    expect(s.receiptsInLedger).toBeGreaterThan(0);
    expect(s.rejected[ErrorCode.INTERNAL] ?? 0).toBe(0);
  }, 300_000);
});
