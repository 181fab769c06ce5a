/**
 * A bounded closed-loop HTTP load generator for the benchmarks, loopback only: N clients, each
 * with its own keep-alive connection to 127.0.0.1, each sending its own queue of requests one
 * at a time (the next as soon as the previous answered), until the queues are empty or a time
 * limit passes. Every request is built from a pre-generated item (distinct bodies and headers
 * per request, built untimed) and its latency is measured with `performance.now()` at
 * microsecond resolution — autocannon's histogram keeps whole milliseconds only, too coarse
 * for single-digit-millisecond medians — and each client keeps its order, so a sequence that
 * must arrive in order (a gateway's receipt chain) can be given to one client.
 * @module
 */

import { Agent, request } from 'node:http';

/** The only host the load generator talks to. */
export const LOOPBACK = '127.0.0.1';

export interface HttpCall {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A JSON body (sent with content-type application/json). */
  readonly body?: string;
}

export interface ClosedLoopOptions<T> {
  readonly port: number;
  /** One queue per client: `lanes.length` is the concurrency. */
  readonly lanes: readonly (readonly T[])[];
  readonly toRequest: (item: T) => HttpCall;
  /** Checks a response: an error description, or undefined when it is the expected one. */
  readonly check: (item: T, status: number, body: string) => string | undefined;
  /** Clients take no new item after this many ms. */
  readonly maxMs: number;
  /** Per-request timeout, ms (default 30 s). */
  readonly timeoutMs?: number;
}

export interface LatencyStats {
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

export interface ClosedLoopResult {
  readonly concurrency: number;
  /** Requests sent (ok + errors). */
  readonly requests: number;
  readonly ok: number;
  readonly errors: number;
  /** Items left unsent when the time limit passed. */
  readonly unsent: number;
  /** From the first request to the last response, ms. */
  readonly elapsedMs: number;
  /** Successful requests per second over `elapsedMs`. */
  readonly perSec: number;
  /** Latency of the successful requests. */
  readonly latency: LatencyStats;
  /** Up to 5 distinct error descriptions. */
  readonly sampleErrors: readonly string[];
}

/** Nearest-rank percentile `p` (0–100] of ascending `sorted`: always a measured value. */
export function nearestRank(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

export function latencyStats(samplesMs: readonly number[]): LatencyStats {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
  return {
    p50Ms: round(nearestRank(sorted, 50)),
    p90Ms: round(nearestRank(sorted, 90)),
    p99Ms: round(nearestRank(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? Number.NaN),
    meanMs: round(mean),
  };
}

function send(
  agent: Agent,
  port: number,
  call: HttpCall,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const body = call.body === undefined ? undefined : Buffer.from(call.body);
    const req = request(
      {
        host: LOOPBACK,
        port,
        method: call.method,
        path: call.path,
        agent,
        headers: {
          ...call.headers,
          ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs the lanes concurrently; see the module comment. */
export async function runClosedLoop<T>(options: ClosedLoopOptions<T>): Promise<ClosedLoopResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const latencies: number[] = [];
  const errors = new Set<string>();
  let ok = 0;
  let failed = 0;
  let unsent = 0;
  const started = performance.now();
  const deadline = started + options.maxMs;
  await Promise.all(
    options.lanes.map(async (items) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < items.length; i++) {
          if (performance.now() >= deadline) {
            unsent += items.length - i;
            break;
          }
          const item = items[i]!;
          const call = options.toRequest(item);
          const t0 = performance.now();
          let problem: string | undefined;
          try {
            const res = await send(agent, options.port, call, timeoutMs);
            const t1 = performance.now();
            problem = options.check(item, res.status, res.body);
            if (problem === undefined) latencies.push(t1 - t0);
          } catch (error) {
            problem = error instanceof Error ? error.message : String(error);
          }
          if (problem === undefined) ok++;
          else {
            failed++;
            if (errors.size < 5) errors.add(problem);
          }
        }
      } finally {
        agent.destroy();
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  return {
    concurrency: options.lanes.length,
    requests: ok + failed,
    ok,
    errors: failed,
    unsent,
    elapsedMs: Math.round(elapsedMs),
    perSec: Math.round((ok * 1_000) / elapsedMs),
    latency: latencyStats(latencies),
    sampleErrors: [...errors],
  };
}
