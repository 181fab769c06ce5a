/**
 * One client connection to the sim pile's socket, shared by the PileDriver and the test/demo
 * controller: connect with retry until a deadline (the pile may still be starting), requests
 * matched to responses by id with a timeout each, pushed events to listeners, and one `onClose`
 * saying whether the link was closed on purpose or lost.
 * @module
 */

import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  createLineSplitter,
  parseServerMessage,
  type SimErrorCode,
  type SimEvent,
  type SimOp,
} from './sim-protocol.ts';

/** The pile answered the request with an error (e.g. start refused because it is faulted). */
export class SimPileRequestError extends Error {
  readonly code: SimErrorCode;
  readonly op: SimOp;
  constructor(op: SimOp, code: SimErrorCode, message: string) {
    super(`sim pile refused ${op}: ${message}`);
    this.name = 'SimPileRequestError';
    this.op = op;
    this.code = code;
  }
}

/** The request never got an answer: timeout, lost link, or the client was closed. */
export class SimPileLinkError extends Error {
  readonly reason: 'timeout' | 'connection-lost' | 'closed' | 'protocol';
  constructor(reason: SimPileLinkError['reason'], message: string) {
    super(message);
    this.name = 'SimPileLinkError';
    this.reason = reason;
  }
}

export interface SimRequestBody {
  readonly op: SimOp;
  readonly connector?: number | undefined;
  readonly maxEnergyWh?: number | undefined;
  readonly detail?: string | undefined;
}

export interface SimConnection {
  /** Resolves with the whole ok response; rejects with SimPileRequestError or SimPileLinkError. */
  request(body: SimRequestBody, timeoutMs: number): Promise<Record<string, unknown>>;
  onEvent(listener: (event: SimEvent) => void): () => void;
  /** Called once: 'lost' when the pile went away, 'closed' after close(). */
  onClose(listener: (how: 'lost' | 'closed') => void): void;
  readonly open: boolean;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** Keep retrying ENOENT/ECONNREFUSED for this long (monotonic ms). */
  readonly connectTimeoutMs: number;
  readonly retryDelayMs?: number;
}

function connectOnce(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const onError = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

async function connectWithRetry(socketPath: string, options: ConnectOptions): Promise<Socket> {
  const deadline = performance.now() + options.connectTimeoutMs;
  const retryDelayMs = options.retryDelayMs ?? 50;
  for (;;) {
    try {
      return await connectOnce(socketPath);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const retryable = code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EAGAIN';
      if (!retryable || performance.now() + retryDelayMs > deadline) {
        throw new SimPileLinkError(
          'connection-lost',
          `cannot connect to sim pile at ${socketPath}: ${(error as Error).message}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, retryDelayMs));
    }
  }
}

interface Pending {
  readonly op: SimOp;
  readonly resolve: (body: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export async function connectSimPile(socketPath: string, options: ConnectOptions): Promise<SimConnection> {
  const socket = await connectWithRetry(socketPath, options);
  socket.setEncoding('utf8');
  const pending = new Map<number, Pending>();
  const eventListeners = new Set<(event: SimEvent) => void>();
  const closeListeners: Array<(how: 'lost' | 'closed') => void> = [];
  let nextId = 1;
  let state: 'open' | 'closing' | 'ended' = 'open';
  let endedHow: 'lost' | 'closed' = 'closed';
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));

  function failAll(error: SimPileLinkError): void {
    for (const entry of pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    pending.clear();
  }

  const feed = createLineSplitter(
    (line) => {
      const message = parseServerMessage(line);
      if (message.type === 'event') {
        for (const listener of [...eventListeners]) listener(message.event);
        return;
      }
      if (message.type !== 'response' || typeof message.id !== 'number') return; // not ours to match
      const entry = pending.get(message.id);
      if (entry === undefined) return; // late answer after a timeout
      pending.delete(message.id);
      clearTimeout(entry.timer);
      if (message.ok) entry.resolve(message.body);
      else entry.reject(new SimPileRequestError(entry.op, message.code, message.error));
    },
    () => {},
  );
  socket.on('data', (chunk: string) => feed(chunk));
  socket.on('error', () => {}); // 'close' follows and carries the decision
  socket.on('close', () => {
    const how = state === 'open' ? 'lost' : 'closed';
    state = 'ended';
    endedHow = how;
    failAll(
      how === 'lost'
        ? new SimPileLinkError('connection-lost', 'connection to the sim pile was lost')
        : new SimPileLinkError('closed', 'sim pile client closed'),
    );
    for (const listener of closeListeners.splice(0)) listener(how);
  });

  return {
    get open() {
      return state === 'open';
    },
    request(body, timeoutMs) {
      if (state !== 'open') {
        return Promise.reject(
          state === 'closing'
            ? new SimPileLinkError('closed', 'sim pile client closed')
            : new SimPileLinkError('connection-lost', 'not connected to the sim pile'),
        );
      }
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(
            new SimPileLinkError('timeout', `sim pile did not answer ${body.op} within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        pending.set(id, { op: body.op, resolve, reject, timer });
        socket.write(`${JSON.stringify({ id, ...body })}\n`);
      });
    },
    onEvent(listener) {
      eventListeners.add(listener);
      return () => eventListeners.delete(listener);
    },
    onClose(listener) {
      if (state === 'ended') listener(endedHow);
      else closeListeners.push(listener);
    },
    async close() {
      if (state === 'ended') return;
      if (state === 'open') {
        state = 'closing';
        failAll(new SimPileLinkError('closed', 'sim pile client closed'));
        socket.end();
        const forced = setTimeout(() => socket.destroy(), 1000);
        await closed;
        clearTimeout(forced);
        return;
      }
      await closed;
    },
  };
}
