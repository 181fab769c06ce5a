/**
 * An in-process GATT transport: the same link code as over BLE, without a radio, for fast
 * unit tests and the single-process demo. `connect()` returns a {@link PhoneLink} that behaves
 * like a BLE link at a chosen MTU: the hello arrives by long read in MTU−1 blobs, writes are
 * limited to 512 B, notifications to MTU−3 B (longer ones are refused, as bleno would cut them).
 * @module
 */

import { randomUUID } from 'node:crypto';
import { longRead, type PhoneLink } from '../../../shared/src/index.ts';
import type { GattHandler, GattTransport, LinkId } from '../contracts.ts';

export interface InProcessPhoneLink extends PhoneLink {
  readonly id: LinkId;
  readonly mtu: number;
  /** Phone-initiated disconnect. */
  disconnect(): void;
  /** ATT operations used so far (reads, writes), for round-trip counts. */
  readonly counters: { reads: number; writes: number; notifications: number };
}

interface PhoneEnd {
  readonly mtu: number;
  readonly notifyListeners: Set<(unit: Uint8Array) => void>;
  readonly disconnectListeners: Set<() => void>;
  readonly counters: { reads: number; writes: number; notifications: number };
  connected: boolean;
}

export class InProcessTransport implements GattTransport {
  #handler: GattHandler | undefined;
  readonly #phones = new Map<LinkId, PhoneEnd>();

  async start(handler: GattHandler): Promise<void> {
    this.#handler = handler;
  }

  async stop(): Promise<void> {
    for (const id of [...this.#phones.keys()]) this.disconnect(id);
    this.#handler = undefined;
  }

  maxNotifySize(link: LinkId): number {
    return (this.#phones.get(link)?.mtu ?? 23) - 3;
  }

  async notify(link: LinkId, unit: Uint8Array): Promise<void> {
    const phone = this.#phones.get(link);
    if (!phone?.connected) return;
    if (unit.length > phone.mtu - 3)
      throw new Error(`notification of ${unit.length} B exceeds MTU ${phone.mtu}`);
    phone.counters.notifications++;
    const copy = unit.slice();
    queueMicrotask(() => {
      for (const listener of [...phone.notifyListeners]) listener(copy);
    });
  }

  disconnect(link: LinkId): void {
    const phone = this.#phones.get(link);
    if (!phone) return;
    this.#phones.delete(link);
    phone.connected = false;
    this.#handler?.onDisconnect(link);
    for (const listener of [...phone.disconnectListeners]) listener();
  }

  /** A phone connects; returns its end of the link. */
  connect(options: { mtu?: number } = {}): InProcessPhoneLink {
    const handler = this.#handler;
    if (!handler) throw new Error('transport not started');
    const id = randomUUID();
    const mtu = Math.min(options.mtu ?? 185, 517);
    const phone: PhoneEnd = {
      mtu,
      notifyListeners: new Set(),
      disconnectListeners: new Set(),
      counters: { reads: 0, writes: 0, notifications: 0 },
      connected: true,
    };
    this.#phones.set(id, phone);
    handler.onConnect(id, { address: `in-process:${id.slice(0, 8)}` });
    handler.onMtu(id, mtu);
    const transport = this;
    return {
      id,
      mtu,
      counters: phone.counters,
      readHello() {
        return longRead(async (offset) => {
          if (!phone.connected) throw new Error('link dropped');
          phone.counters.reads++;
          return (await handler.readHello(id, offset)).subarray(0, mtu - 1);
        }, mtu);
      },
      async write(unit) {
        if (!phone.connected) throw new Error('link dropped');
        if (unit.length > 512) throw new Error('Web Bluetooth refuses writes over 512 B');
        phone.counters.writes++;
        await handler.onWrite(id, unit.slice());
      },
      onNotify(listener) {
        phone.notifyListeners.add(listener);
        handler.onSubscribe(id);
        return () => phone.notifyListeners.delete(listener);
      },
      onDisconnect(listener) {
        phone.disconnectListeners.add(listener);
        return () => phone.disconnectListeners.delete(listener);
      },
      disconnect() {
        transport.disconnect(id);
      },
    };
  }
}
