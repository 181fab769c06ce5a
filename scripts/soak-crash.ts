/**
 * Crash soak: the random kill -9 loop of test/gateway/crash-safety.test.ts for many runs on
 * one data dir and one sim pile (state accumulates), with the same invariants checked after
 * every kill and every restart (test/support/crash-station.ts). The gateway and the sim pile
 * are real processes; phones talk to the gateway over the local socket transport.
 *
 *   tsx scripts/soak-crash.ts [--runs N] [--seed S] [--verbose] [--keep]
 *
 *   --runs N     runs (default 1000)
 *   --seed S     PRNG seed (default random; printed — the seed fixes the plan, not the timing)
 *   --verbose    one line per run (default: a progress line every 25 runs)
 *   --keep       keep the temp dir (ledger, logs) even when everything passed
 *
 * Exit 0 when every invariant held; 1 on the first violation, printing the seed, the run, the
 * gateway's last log lines and the kept data dir.
 * @module
 */

import { parseArgs } from 'node:util';
import {
  CrashModel,
  checkAfterRestart,
  createCrashStation,
  createRng,
  describeRun,
  InvariantViolation,
  randomKillRun,
  seedFrom,
} from '../test/support/crash-station.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log('usage: tsx scripts/soak-crash.ts [--runs N] [--seed S] [--verbose] [--keep]');
  process.exit(0);
}
const runs = Number(values.runs);
if (!Number.isSafeInteger(runs) || runs < 1) {
  console.error('soak-crash: --runs must be a positive integer');
  process.exit(2);
}
const seed = seedFrom(values.seed);
const rng = createRng(seed);
console.log(`soak-crash: ${runs} runs, seed ${seed} (--seed ${seed} replays the plan)`);

const started = performance.now();
const station = await createCrashStation();
const model = new CrashModel(station);
console.log(`soak-crash: station in ${station.dir}`);
let run = 0;
let failed = false;
let slowest = 0;
try {
  await station.startGateway();
  let snapshot = await checkAfterRestart(model, rng, 'first start', []);
  for (run = 1; run <= runs; run++) {
    const out = await randomKillRun(model, rng, run, snapshot);
    snapshot = out.snapshot;
    slowest = Math.max(slowest, out.report.ms);
    if (values.verbose) console.log(describeRun(out.report));
    else if (run % 25 === 0 || run === runs) {
      const elapsed = (performance.now() - started) / 1000;
      const eta = (elapsed / run) * (runs - run);
      console.log(
        `soak-crash: ${run}/${runs} runs, ${elapsed.toFixed(0)} s, ~${eta.toFixed(0)} s left — ` +
          `${model.stats.accepted} accepted, ${model.stats.receiptsInLedger} receipts, ` +
          `${model.stats.respentRefused} re-presentations refused`,
      );
    }
  }
  run = runs;
  console.log(`soak-crash: re-presenting all ${model.spentVouchers().length} spent vouchers…`);
  await model.checkSpentRefused('final', model.spentVouchers(), rng);
  await station.stopGateway();
  await model.checkLedger('final (gateway stopped)');
  const cli = await station.cliLedgerVerify();
  if (cli.code !== 0) throw new InvariantViolation(`final: pilepass-gateway ledger verify: ${cli.stdout}`);
} catch (error) {
  failed = true;
  console.error(`\nsoak-crash: FAILED at run ${run} — seed ${seed} (replay with --seed ${seed})`);
  console.error(error instanceof InvariantViolation ? `  ${error.message}` : error);
  console.error(`  gateway stderr (tail):\n${station.gateway?.stderr().slice(-3_000) ?? '  (not running)'}`);
  console.error(`  data dir kept: ${station.dir}`);
} finally {
  await station.dispose({ keepDir: failed || values.keep });
}

const s = model.stats;
const seconds = (performance.now() - started) / 1000;
console.log(
  [
    `soak-crash: ${failed ? 'FAILED' : 'ok'} — ${failed ? run - 1 : runs} kill -9 runs in ${seconds.toFixed(1)} s ` +
      `(${((seconds * 1000) / Math.max(1, run)).toFixed(0)} ms per run, slowest ${slowest.toFixed(0)} ms), seed ${seed}`,
    `  vouchers issued ${s.vouchersIssued}, token taps ${s.tokenTaps}, accepted ${s.accepted}`,
    `  receipts: ${s.receiptsToPhones} delivered to phones, ${s.receiptsInLedger} in the ledger`,
    `  after a crash: ${s.resumedByRecovery} sessions resumed (pile on), ${s.closedByRecovery} closed`,
    `  spent vouchers re-presented and refused: ${s.respentRefused}`,
    `  refusals by code: ${JSON.stringify(s.rejected)}`,
  ].join('\n'),
);
process.exit(failed ? 1 : 0);
