/**
 * One Modbus bus (an RS-485 serial port speaking Modbus RTU, or Modbus TCP for meters behind an
 * Ethernet gateway and for tests) shared by the meters of every connector, through npm
 * `modbus-serial`. Requests are serialised — RTU is half-duplex and the client's unit id is
 * per-client state — and each has a timeout. A bus that is missing or fails is reopened on the
 * next request, so an unplugged USB adapter shows up as silent meters, not as a dead gateway.
 * @module
 */

import ModbusRTU from 'modbus-serial';
import { MeterError } from './meter.ts';

export interface ModbusBusOptions {
  /** `/dev/ttyUSB0`-style serial device (RTU), or `tcp:<host>:<port>` (Modbus TCP). */
  readonly port: string;
  readonly baudRate: number;
  readonly parity: 'none' | 'even' | 'odd';
  readonly dataBits: 7 | 8;
  readonly stopBits: 1 | 2;
  /** Per request, ms. */
  readonly timeoutMs: number;
}

export interface ModbusBus {
  /** Reads `count` input registers (function code 04) of one unit. */
  readInputRegisters(unitId: number, address: number, count: number): Promise<readonly number[]>;
  close(): Promise<void>;
}

interface ModbusErrorShape {
  readonly name?: string;
  readonly message?: string;
  readonly modbusCode?: number;
  readonly errno?: string;
}

/** Maps modbus-serial's errors onto MeterError codes. */
function meterErrorOf(error: unknown, what: string): MeterError {
  const e = (error ?? {}) as ModbusErrorShape;
  const detail = e.message ?? String(error);
  if (e.name === 'TransactionTimedOutError')
    return new MeterError('timeout', `${what}: no answer`, { cause: error });
  if (typeof e.modbusCode === 'number')
    return new MeterError('exception', `${what}: ${detail}`, { cause: error });
  return new MeterError('bus', `${what}: ${detail}`, { cause: error });
}

export function parseTcpPort(port: string): { host: string; port: number } | undefined {
  const match = /^tcp:([^:\s]+):(\d{1,5})$/.exec(port);
  if (!match) return undefined;
  return { host: match[1] as string, port: Number(match[2]) };
}

export function openModbusBus(options: ModbusBusOptions): ModbusBus {
  let client: ModbusRTU | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  const drop = () => {
    const old = client;
    client = undefined;
    if (old?.isOpen) old.close(() => {});
  };

  async function connected(): Promise<ModbusRTU> {
    if (client?.isOpen) return client;
    drop();
    const fresh = new ModbusRTU();
    // A serial port that errors or closes is reopened on the next request.
    fresh.on('error', () => {});
    fresh.on('close', () => {
      if (client === fresh) client = undefined;
    });
    const tcp = parseTcpPort(options.port);
    try {
      if (tcp) await fresh.connectTCP(tcp.host, { port: tcp.port, timeout: options.timeoutMs });
      else {
        await fresh.connectRTUBuffered(options.port, {
          baudRate: options.baudRate,
          parity: options.parity,
          dataBits: options.dataBits,
          stopBits: options.stopBits,
        });
      }
    } catch (error) {
      fresh.close(() => {});
      throw meterErrorOf(error, `cannot open Modbus port ${options.port}`);
    }
    fresh.setTimeout(options.timeoutMs);
    client = fresh;
    return fresh;
  }

  function serialised<T>(task: () => Promise<T>): Promise<T> {
    const run = queue.then(task, task);
    queue = run.catch(() => {});
    return run;
  }

  return {
    readInputRegisters(unitId, address, count) {
      return serialised(async () => {
        if (closed) throw new MeterError('bus', 'Modbus bus is closed');
        const c = await connected();
        c.setID(unitId);
        const what = `Modbus unit ${unitId} input registers ${address}+${count}`;
        try {
          const result = await c.readInputRegisters(address, count);
          if (result.data.length !== count) throw new MeterError('implausible', `${what}: wrong length`);
          return result.data;
        } catch (error) {
          if (error instanceof MeterError) throw error;
          const mapped = meterErrorOf(error, what);
          // A TCP link or serial port in an unknown state is reopened; a timeout on RTU is not
          // (another unit on the same bus may answer fine).
          if (mapped.code === 'bus' || (mapped.code === 'timeout' && parseTcpPort(options.port))) drop();
          throw mapped;
        }
      });
    },
    close() {
      closed = true;
      return serialised(async () => {
        const old = client;
        client = undefined;
        if (old?.isOpen) await new Promise<void>((resolve) => old.close(() => resolve()));
      });
    },
  };
}
