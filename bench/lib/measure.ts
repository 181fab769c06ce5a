/**
 * Time-boxed throughput measurement shared by the benchmarks. An operation runs sequentially
 * (each call awaited) for a warm-up period, then for a measured period split into samples;
 * the result is the median sample rate (robust to a neighbour stealing the CPU for a moment),
 * with the slowest and fastest sample beside it. Only the time spent inside the operation
 * counts: operations that need fresh state per call (e.g. a new handshake per tap) get it from
 * `prepare`, which builds a batch of states outside the timer.
 * @module
 */

import { cpus, loadavg } from 'node:os';

export interface MeasureOptions {
  /** Untimed warm-up (JIT, caches of the library under test), ms of operation time. */
  readonly warmupMs?: number;
  /** Measured operation time, ms. */
  readonly durationMs?: number;
  /** Number of samples the measured time is split into (median reported). */
  readonly samples?: number;
  /** Largest batch `prepare` is asked for at once. */
  readonly maxBatch?: number;
}

export interface Measurement {
  /** Operations per second (median of the samples), rounded to an integer. */
  readonly opsPerSec: number;
  /** Slowest and fastest sample, ops/s. */
  readonly minOpsPerSec: number;
  readonly maxOpsPerSec: number;
  readonly iterations: number;
  /** Operation time measured, ms (excludes `prepare`). */
  readonly elapsedMs: number;
  /** Mean time per operation, µs (two decimals). */
  readonly meanUs: number;
}

export const DEFAULT_WARMUP_MS = 200;
export const DEFAULT_DURATION_MS = 750;
export const DEFAULT_SAMPLES = 3;

/** Runs batches until `targetMs` of operation time has accumulated. */
async function timedRun<S>(
  prepare: (count: number) => S[] | Promise<S[]>,
  run: (state: S) => unknown,
  targetMs: number,
  maxBatch: number,
): Promise<{ iterations: number; elapsedMs: number }> {
  let iterations = 0;
  let elapsedMs = 0;
  let batch = 1;
  do {
    const states = await prepare(batch);
    const start = performance.now();
    for (const state of states) await run(state);
    elapsedMs += performance.now() - start;
    iterations += states.length;
    // Next batch: about what is left of the time box at the rate seen so far (at least 1).
    const perOpMs = elapsedMs / iterations;
    const left = Math.max(targetMs - elapsedMs, 0);
    batch = Math.min(maxBatch, Math.max(1, Math.ceil(left / Math.max(perOpMs, 1e-6))));
  } while (elapsedMs < targetMs);
  return { iterations, elapsedMs };
}

/** Measures `run(state)` where every call gets a fresh state built untimed by `prepare`. */
export async function measurePrepared<S>(
  prepare: (count: number) => S[] | Promise<S[]>,
  run: (state: S) => unknown,
  options: MeasureOptions = {},
): Promise<Measurement> {
  const maxBatch = options.maxBatch ?? 4_096;
  const samples = Math.max(1, options.samples ?? DEFAULT_SAMPLES);
  const sampleMs = (options.durationMs ?? DEFAULT_DURATION_MS) / samples;
  await timedRun(prepare, run, options.warmupMs ?? DEFAULT_WARMUP_MS, maxBatch);
  const rates: number[] = [];
  let iterations = 0;
  let elapsedMs = 0;
  for (let i = 0; i < samples; i++) {
    const sample = await timedRun(prepare, run, sampleMs, maxBatch);
    rates.push((sample.iterations * 1_000) / sample.elapsedMs);
    iterations += sample.iterations;
    elapsedMs += sample.elapsedMs;
  }
  rates.sort((a, b) => a - b);
  const mid = rates.length >> 1;
  const median = rates.length % 2 ? rates[mid]! : (rates[mid - 1]! + rates[mid]!) / 2;
  return {
    opsPerSec: Math.round(median),
    minOpsPerSec: Math.round(rates[0]!),
    maxOpsPerSec: Math.round(rates[rates.length - 1]!),
    iterations,
    elapsedMs: Math.round(elapsedMs),
    meanUs: Math.round((elapsedMs * 100_000) / iterations) / 100,
  };
}

/** Measures a stateless operation. */
export function measure(run: () => unknown, options: MeasureOptions = {}): Promise<Measurement> {
  return measurePrepared((count) => new Array<undefined>(count).fill(undefined), run, options);
}

/** What a result file records about where it was measured. */
export function machineInfo() {
  const list = cpus();
  return {
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    /** 1-minute load average when the run started: a busy machine means noisy numbers. */
    loadAvg1m: Math.round(loadavg()[0]! * 100) / 100,
    date: new Date().toISOString(),
  };
}
