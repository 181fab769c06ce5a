/**
 * A fake CAN bus for the CAN pile driver's tests (this kernel has no CAN): every frame a socket
 * sends reaches every other socket on the bus, asynchronously (as a real bus would), and is
 * logged. A socket's transmissions can be cut to play a broken wire or a dead sender.
 */

import type { CanFrame, CanSocket } from '../../../gateway/src/pile/can/can-socket.ts';

export interface LoggedFrame {
  readonly from: string;
  readonly frame: CanFrame;
}

export class FakeCanBus {
  readonly log: LoggedFrame[] = [];
  readonly #sockets = new Map<string, FakeCanSocket>();
  readonly #cut = new Set<string>();

  socket(name: string): FakeCanSocket {
    const socket = new FakeCanSocket(name, this);
    this.#sockets.set(name, socket);
    return socket;
  }

  /** Frames from `name` no longer reach the bus (or again do, with `restore`). */
  cut(name: string): void {
    this.#cut.add(name);
  }

  restore(name: string): void {
    this.#cut.delete(name);
  }

  /** Puts a raw frame on the bus as if `from` had sent it (for malformed frames). */
  inject(from: string, frame: CanFrame): void {
    this.transmit(from, frame);
  }

  sent(from: string, id?: number): CanFrame[] {
    return this.log
      .filter((l) => l.from === from && (id === undefined || l.frame.id === id))
      .map((l) => l.frame);
  }

  transmit(from: string, frame: CanFrame): void {
    if (this.#cut.has(from)) return;
    const copy: CanFrame = { ...frame, data: new Uint8Array(frame.data) };
    this.log.push({ from, frame: copy });
    for (const [name, socket] of this.#sockets) {
      if (name !== from) queueMicrotask(() => socket.deliver(copy));
    }
  }
}

export class FakeCanSocket implements CanSocket {
  readonly name: string;
  closed = false;
  readonly #bus: FakeCanBus;
  readonly #listeners = new Set<(frame: CanFrame) => void>();

  constructor(name: string, bus: FakeCanBus) {
    this.name = name;
    this.#bus = bus;
  }

  send(frame: CanFrame): void {
    if (this.closed) throw new Error('socket closed');
    if (frame.data.length > 8) throw new Error('more than 8 data bytes');
    this.#bus.transmit(this.name, frame);
  }

  onFrame(listener: (frame: CanFrame) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  deliver(frame: CanFrame): void {
    if (this.closed) return;
    for (const listener of [...this.#listeners]) listener(frame);
  }

  close(): void {
    this.closed = true;
    this.#listeners.clear();
  }
}
