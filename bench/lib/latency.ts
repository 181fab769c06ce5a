/**
 * Latency summaries shared by the benchmarks: nearest-rank percentiles over a list of samples
 * (no interpolation, so every reported figure is a latency that was actually measured), and a
 * compact summary (count, min, p50, p95, p99, max, mean) rounded for result files.
 * @module
 */

/** Nearest-rank percentile `p` (0–100] of `samples`; NaN for an empty list. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface LatencySummary {
  readonly count: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

/** Rounds to `digits` decimals (result files stay readable). */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Summary of latency samples in ms, rounded to `digits` decimals. */
export function summarize(samplesMs: readonly number[], digits = 2): LatencySummary {
  const mean = samplesMs.reduce((a, b) => a + b, 0) / samplesMs.length;
  return {
    count: samplesMs.length,
    minMs: round(Math.min(...samplesMs), digits),
    p50Ms: round(percentile(samplesMs, 50), digits),
    p95Ms: round(percentile(samplesMs, 95), digits),
    p99Ms: round(percentile(samplesMs, 99), digits),
    maxMs: round(Math.max(...samplesMs), digits),
    meanMs: round(mean, digits),
  };
}
