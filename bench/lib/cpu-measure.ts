/**
 * Throughput by wall clock **and** by this process's CPU time, in one measurement. On a machine
 * shared with other work the wall-clock rate drops with the load while the CPU-time rate (what
 * one dedicated core would do) stays put, so a benchmark can report both and say which one its
 * headline uses. Same shape as `measurePrepared` in measure.ts: `prepare` builds fresh states
 * untimed, samples are split by operation wall time, and the median sample is reported.
 *
 * CPU time is `process.cpuUsage()` user + system of the whole process: it includes helper
 * threads (parallel GC, the libuv pool), so it slightly overstates one core's cost.
 * @module
 */

export interface DualMeasurement {
  /** Median sample rate by wall clock, ops/s. */
  readonly opsPerSec: number;
  /** Median sample rate by process CPU time, ops per CPU-second. */
  readonly opsPerCpuSec: number;
  /** Mean wall and CPU time per operation over all samples, µs (two decimals). */
  readonly meanUs: number;
  readonly meanCpuUs: number;
  readonly iterations: number;
  /** Slowest and fastest sample by CPU time, ops per CPU-second. */
  readonly minOpsPerCpuSec: number;
  readonly maxOpsPerCpuSec: number;
}

export interface DualOptions {
  readonly warmupMs?: number;
  readonly durationMs?: number;
  readonly samples?: number;
  readonly maxBatch?: number;
}

interface Run {
  iterations: number;
  wallMs: number;
  cpuMs: number;
}

async function timedRun<S>(
  prepare: (count: number) => S[] | Promise<S[]>,
  run: (state: S) => unknown,
  targetMs: number,
  maxBatch: number,
): Promise<Run> {
  const total: Run = { iterations: 0, wallMs: 0, cpuMs: 0 };
  let batch = 1;
  do {
    const states = await prepare(batch);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const state of states) await run(state);
    total.wallMs += performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    total.cpuMs += (cpu.user + cpu.system) / 1_000;
    total.iterations += states.length;
    const perOpMs = total.wallMs / total.iterations;
    const left = Math.max(targetMs - total.wallMs, 0);
    batch = Math.min(maxBatch, Math.max(1, Math.ceil(left / Math.max(perOpMs, 1e-6))));
  } while (total.wallMs < targetMs);
  return total;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Measures `run(state)` (fresh state per call from `prepare`) by wall clock and CPU time. */
export async function measureDual<S>(
  prepare: (count: number) => S[] | Promise<S[]>,
  run: (state: S) => unknown,
  options: DualOptions = {},
): Promise<DualMeasurement> {
  const maxBatch = options.maxBatch ?? 4_096;
  const samples = Math.max(1, options.samples ?? 5);
  const sampleMs = (options.durationMs ?? 1_500) / samples;
  await timedRun(prepare, run, options.warmupMs ?? 300, maxBatch);
  const wallRates: number[] = [];
  const cpuRates: number[] = [];
  const all: Run = { iterations: 0, wallMs: 0, cpuMs: 0 };
  for (let i = 0; i < samples; i++) {
    const s = await timedRun(prepare, run, sampleMs, maxBatch);
    wallRates.push((s.iterations * 1_000) / s.wallMs);
    cpuRates.push((s.iterations * 1_000) / Math.max(s.cpuMs, 1e-3));
    all.iterations += s.iterations;
    all.wallMs += s.wallMs;
    all.cpuMs += s.cpuMs;
  }
  return {
    opsPerSec: Math.round(median(wallRates)),
    opsPerCpuSec: Math.round(median(cpuRates)),
    meanUs: Math.round((all.wallMs * 100_000) / all.iterations) / 100,
    meanCpuUs: Math.round((all.cpuMs * 100_000) / all.iterations) / 100,
    iterations: all.iterations,
    minOpsPerCpuSec: Math.round(Math.min(...cpuRates)),
    maxOpsPerCpuSec: Math.round(Math.max(...cpuRates)),
  };
}

/** `measureDual` for a stateless operation. */
export function measureDualStateless(
  run: () => unknown,
  options: DualOptions = {},
): Promise<DualMeasurement> {
  return measureDual((count) => new Array<undefined>(count).fill(undefined), run, options);
}
