/**
 * The CAN I/O the pile driver needs, as a small interface (send a frame, receive frames, close),
 * and its implementation on Linux SocketCAN through npm `socketcan` (4.x, a native addon). That
 * package is an optional dependency and requires Node >= 22, so npm skips it on Node 20; it is
 * loaded on first use (dynamic import) and its absence is a typed `CanUnavailableError` saying
 * so. The kernel filters receive frames to the pile node's ids.
 * @module
 */

import { CAN_ID_BASE } from './frames.ts';

export interface CanFrame {
  /** 11-bit standard id. */
  readonly id: number;
  /** 0–8 data bytes. */
  readonly data: Uint8Array;
  /** Extended (29-bit) id or remote frame: the PilePass frame set uses neither. */
  readonly ext?: boolean;
  readonly rtr?: boolean;
}

export interface CanSocket {
  send(frame: CanFrame): void;
  /** Subscribes to received frames; returns the unsubscribe function. */
  onFrame(listener: (frame: CanFrame) => void): () => void;
  close(): void;
}

/** SocketCAN cannot be used: the module is missing or the interface cannot be opened. */
export class CanUnavailableError extends Error {
  readonly code: 'module-missing' | 'interface';
  constructor(code: CanUnavailableError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CanUnavailableError';
    this.code = code;
  }
}

/** The parts of socketcan 4.x this layer uses. */
export interface SocketcanModule {
  createRawChannel(iface: string, timestamps?: boolean): SocketcanChannel;
}

export interface SocketcanMessage {
  readonly id: number;
  readonly data: Uint8Array;
  readonly ext?: boolean;
  readonly rtr?: boolean;
  readonly err?: boolean;
}

export interface SocketcanChannel {
  addListener(event: 'onMessage', listener: (message: SocketcanMessage) => void): void;
  setRxFilters(filters: readonly { id: number; mask: number }[]): void;
  send(message: { id: number; ext: boolean; rtr: boolean; data: Buffer }): void;
  start(): void;
  stop(): void;
}

/** Loads socketcan, or throws CanUnavailableError('module-missing') naming why. */
export async function loadSocketcan(): Promise<SocketcanModule> {
  // A variable specifier: the optional module is usually absent here, and tsc must not need it.
  const specifier = 'socketcan';
  let loaded: unknown;
  try {
    loaded = await import(specifier);
  } catch (error) {
    throw new CanUnavailableError(
      'module-missing',
      `SocketCAN unavailable: npm optional dependency socketcan (4.3.1) is not installed or its native addon did not ` +
        `load — it requires Node >= 22 (this is Node ${process.versions.node}) and a C++ toolchain ` +
        `(${(error as Error).message})`,
      { cause: error },
    );
  }
  const mod = ((loaded as { default?: unknown }).default ?? loaded) as Partial<SocketcanModule>;
  if (typeof mod.createRawChannel !== 'function') {
    throw new CanUnavailableError(
      'module-missing',
      'SocketCAN unavailable: socketcan has no createRawChannel',
    );
  }
  return mod as SocketcanModule;
}

export interface OpenSocketCanOptions {
  /** Let the kernel pass only this pile node's frames (fault, status, meter, heartbeat). */
  readonly pileNodeId?: number;
  /** Injected module (tests); default: `loadSocketcan()`. */
  readonly module?: SocketcanModule;
}

/** Opens a raw SocketCAN channel on `iface`. */
export async function openSocketCan(iface: string, options: OpenSocketCanOptions = {}): Promise<CanSocket> {
  const socketcan = options.module ?? (await loadSocketcan());
  let channel: SocketcanChannel;
  try {
    channel = socketcan.createRawChannel(iface, true);
    const node = options.pileNodeId;
    if (node !== undefined) {
      const ids = [
        CAN_ID_BASE.pileFault,
        CAN_ID_BASE.pileStatus,
        CAN_ID_BASE.pileMeter,
        CAN_ID_BASE.heartbeat,
      ];
      channel.setRxFilters(ids.map((base) => ({ id: base + node, mask: 0x7ff })));
    }
  } catch (error) {
    throw new CanUnavailableError(
      'interface',
      `cannot open CAN interface ${iface}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const listeners = new Set<(frame: CanFrame) => void>();
  channel.addListener('onMessage', (message) => {
    if (message.err) return;
    const frame: CanFrame = {
      id: message.id,
      data: new Uint8Array(message.data),
      ext: !!message.ext,
      rtr: !!message.rtr,
    };
    for (const listener of [...listeners]) listener(frame);
  });
  channel.start();
  let closed = false;
  return {
    send(frame) {
      if (closed) throw new CanUnavailableError('interface', `CAN interface ${iface} is closed`);
      channel.send({ id: frame.id, ext: false, rtr: false, data: Buffer.from(frame.data) });
    },
    onFrame(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      channel.stop();
    },
  };
}
