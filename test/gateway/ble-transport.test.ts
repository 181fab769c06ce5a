/**
 * Integration test of the BLE transport over a real HCI link: BlueZ's emulated LE controller
 * (scripts/virtual-ble/btvirt.ts) with the bleno GattTransport on pty 0 and the noble central on
 * pty 1. Checks long hello reads, long writes, notification sizes and order, disconnects and
 * link ids at ATT MTU 23 and 256, and prints the measured timings.
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlenoTransport } from '../../gateway/src/ble/bleno-transport.ts';
import { connectToGateway, type GatewayConnection } from '../../gateway/src/ble/noble-central.ts';
import type { GattHandler, GattTransport, LinkId } from '../../gateway/src/contracts.ts';
import { startVirtualBle, type VirtualBle } from '../../scripts/virtual-ble/btvirt.ts';

const GATEWAY_ID = 'gw-ble-test.01';
const HELLO_BYTES = 186;
const WRITE_BYTES = 400;
const SCAN_TIMEOUT_MS = 20_000;

/** A GattHandler that records everything and echoes control writes back as notifications. */
class EchoHandler implements GattHandler {
  transport: GattTransport | undefined;
  readonly connected: LinkId[] = [];
  readonly disconnected: LinkId[] = [];
  readonly subscribed = new Set<LinkId>();
  readonly mtus = new Map<LinkId, number>();
  readonly hellos = new Map<LinkId, Uint8Array>();
  readonly helloOffsets = new Map<LinkId, number[]>();
  readonly writes = new Map<LinkId, Uint8Array[]>();
  readonly errors: unknown[] = [];

  onConnect(link: LinkId): void {
    this.connected.push(link);
    this.hellos.set(link, new Uint8Array(randomBytes(HELLO_BYTES)));
  }
  onMtu(link: LinkId, mtu: number): void {
    this.mtus.set(link, mtu);
  }
  onSubscribe(link: LinkId): void {
    this.subscribed.add(link);
  }
  onUnsubscribe(link: LinkId): void {
    this.subscribed.delete(link);
  }
  async readHello(link: LinkId, offset: number): Promise<Uint8Array> {
    this.helloOffsets.set(link, [...(this.helloOffsets.get(link) ?? []), offset]);
    // As gateway/src/link does: the bytes from `offset` on; the transport sends MTU − 1 of them.
    return this.hellos.get(link)!.subarray(offset);
  }
  async onWrite(link: LinkId, data: Uint8Array): Promise<void> {
    this.writes.set(link, [...(this.writes.get(link) ?? []), data]);
    const transport = this.transport!;
    const size = transport.maxNotifySize(link);
    try {
      for (let i = 0; i < data.length; i += size) await transport.notify(link, data.subarray(i, i + size));
    } catch (err) {
      this.errors.push(err);
    }
  }
  onDisconnect(link: LinkId): void {
    this.disconnected.push(link);
  }
  get lastLink(): LinkId {
    const link = this.connected.at(-1);
    if (link === undefined) throw new Error('no connection seen by the transport');
    return link;
  }
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const total = (units: readonly Uint8Array[]) => units.reduce((n, u) => n + u.length, 0);
const join = (units: readonly Uint8Array[]) => new Uint8Array(Buffer.concat(units));

describe('BLE GATT transport over the emulated HCI controller (btvirt)', () => {
  let vble: VirtualBle | undefined;
  let transport: GattTransport | undefined;
  let handler = new EchoHandler();
  const centrals: GatewayConnection[] = [];
  const allLinks: LinkId[] = [];
  const timings: Record<string, string> = {};

  const startTransport = async (maxMtu?: number) => {
    handler = new EchoHandler();
    const created = createBlenoTransport(
      { port: 'uart', path: vble!.ptys[0]! },
      { name: 'PilePass', gatewayId: GATEWAY_ID, ...(maxMtu === undefined ? {} : { maxMtu }) },
    );
    handler.transport = created;
    transport = created;
    await created.start(handler);
  };

  const connect = async (mtu: number, gatewayId = GATEWAY_ID, scanTimeoutMs = SCAN_TIMEOUT_MS) => {
    const central = await connectToGateway(
      { port: 'uart', path: vble!.ptys[1]! },
      { gatewayId, mtu, scanTimeoutMs, operationTimeoutMs: 15_000 },
    );
    centrals.push(central);
    allLinks.push(handler.lastLink);
    return central;
  };

  beforeAll(async () => {
    vble = await startVirtualBle({ devices: 2, lockTimeoutMs: 100_000 });
    await startTransport();
  }, 150_000);

  afterAll(async () => {
    // Everything is stopped even when a test failed; each step on its own.
    for (const central of centrals) await central.disconnect().catch(() => {});
    await transport?.stop().catch(() => {});
    await vble?.stop();
    if (Object.keys(timings).length > 0) console.info('BLE timings over btvirt:', timings);
  }, 60_000);

  for (const mtu of [23, 256]) {
    it(`MTU ${mtu}: long hello read, ${WRITE_BYTES} B write, ordered notifications ≤ MTU−3, disconnect`, async () => {
      const t0 = performance.now();
      const central = await connect(mtu);
      const tConnected = performance.now();
      const link = handler.lastLink;

      expect(central.mtu).toBe(mtu);
      expect(transport!.maxNotifySize(link)).toBe(mtu - 3);
      if (mtu > 23) expect(handler.mtus.get(link)).toBe(mtu);
      expect(handler.subscribed.has(link)).toBe(true);

      const units: Uint8Array[] = [];
      central.onNotify((u) => units.push(u));

      // Long read: 1 Read + Read Blobs, one handler call per blob, all bytes exactly.
      const tRead = performance.now();
      const hello = await central.readHello();
      const tReadDone = performance.now();
      expect(hello).toEqual(handler.hellos.get(link));
      expect(hello.length).toBe(HELLO_BYTES);
      const blobs = Math.floor(HELLO_BYTES / (mtu - 1)) + 1;
      expect(handler.helloOffsets.get(link)).toEqual(Array.from({ length: blobs }, (_, i) => i * (mtu - 1)));

      // Long write: prepared writes arrive joined, once.
      const data = new Uint8Array(randomBytes(WRITE_BYTES));
      const tWrite = performance.now();
      await central.write(data);
      const tWriteDone = performance.now();
      expect(handler.writes.get(link)).toEqual([data]);

      await waitUntil(() => total(units) >= WRITE_BYTES, 'echoed notifications');
      const tEchoDone = performance.now();
      expect(handler.errors).toEqual([]);
      expect(units.length).toBe(Math.ceil(WRITE_BYTES / (mtu - 3)));
      for (const unit of units) expect(unit.length).toBeLessThanOrEqual(mtu - 3);
      expect(join(units)).toEqual(data);

      // Phone-initiated disconnect reaches the transport; the link is forgotten.
      const tDisconnect = performance.now();
      await central.disconnect();
      await waitUntil(() => handler.disconnected.includes(link), 'onDisconnect at the transport');
      const tDisconnected = performance.now();
      expect(handler.subscribed.has(link)).toBe(false);
      await expect(transport!.notify(link, new Uint8Array([1]))).rejects.toThrow(/not connected/);

      timings[`MTU ${mtu}`] = [
        `connect+discovery ${(tConnected - t0).toFixed(0)} ms`,
        `hello read ${(tReadDone - tRead).toFixed(1)} ms`,
        `${WRITE_BYTES} B write ${(tWriteDone - tWrite).toFixed(1)} ms`,
        `echo complete ${(tEchoDone - tWrite).toFixed(1)} ms`,
        `disconnect seen ${(tDisconnected - tDisconnect).toFixed(1)} ms`,
      ].join(', ');
    });
  }

  it('gateway-initiated disconnect; sequential connections get fresh link ids', async () => {
    const first = await connect(256);
    const firstLink = handler.lastLink;
    const reasons: string[] = [];
    first.onDisconnect((reason) => reasons.push(reason));

    transport!.disconnect(firstLink);
    await waitUntil(
      () => handler.disconnected.includes(firstLink),
      'onDisconnect after transport.disconnect',
    );
    await waitUntil(() => reasons.length === 1, 'the phone seeing the disconnect');
    await expect(first.readHello()).rejects.toThrow(/disconnected/);
    await first.disconnect();

    const second = await connect(256);
    const secondLink = handler.lastLink;
    expect(secondLink).not.toBe(firstLink);
    expect(await second.readHello()).toEqual(handler.hellos.get(secondLink));
    await second.disconnect();
    await waitUntil(() => handler.disconnected.includes(secondLink), 'second onDisconnect');

    // Every connection of this file got its own id (HCI handles are reused by the controller).
    expect(new Set(allLinks).size).toBe(allLinks.length);
    expect(allLinks.length).toBeGreaterThanOrEqual(4);
  });

  it('scanning for another gateway id finds nothing', async () => {
    await expect(connect(256, 'another-gateway', 1_500)).rejects.toThrow(/scan for gateway another-gateway/);
  });

  it('maxMtu 23 on the transport holds the link at MTU 23; the transport restarts on the same port', async () => {
    await transport!.stop();
    await startTransport(23);
    const central = await connect(256);
    const link = handler.lastLink;
    expect(central.mtu).toBe(23);
    expect(transport!.maxNotifySize(link)).toBe(20);
    expect(await central.readHello()).toEqual(handler.hellos.get(link));
    const units: Uint8Array[] = [];
    central.onNotify((u) => units.push(u));
    const data = new Uint8Array(randomBytes(WRITE_BYTES));
    await central.write(data);
    await waitUntil(() => total(units) >= WRITE_BYTES, 'echoed notifications');
    expect(units.every((u) => u.length <= 20)).toBe(true);
    expect(join(units)).toEqual(data);
    await central.disconnect();
    await waitUntil(() => handler.disconnected.includes(link), 'onDisconnect');
  });
});
