/**
 * Eastron SDM-style meters served by a real Modbus server (modbus-serial's ServerTCP on
 * loopback, or ServerSerial on a pty): float32 input registers for import energy (kWh) and
 * power (W) per unit id, with switches that make a unit answer with a Modbus exception or not
 * answer at all.
 */

import { createServer } from 'node:net';
import { ServerSerial, ServerTCP } from 'modbus-serial';
import {
  encodeFloat32Registers,
  METER_REGISTER_MAPS,
  type MeterModel,
} from '../../../gateway/src/pile/relay/meter-models.ts';

export interface SimulatedMeter {
  model: MeterModel;
  kwh: number;
  powerW: number;
  /** `ok` answers; `exception` answers with Modbus exception 04; `silent` never answers. */
  mode: 'ok' | 'exception' | 'silent';
}

export class MeterBank {
  readonly units = new Map<number, SimulatedMeter>();
  requests = 0;

  add(unitId: number, meter: Partial<SimulatedMeter> = {}): SimulatedMeter {
    const m: SimulatedMeter = { model: 'sdm630', kwh: 0, powerW: 0, mode: 'ok', ...meter };
    this.units.set(unitId, m);
    return m;
  }

  unit(unitId: number): SimulatedMeter {
    const m = this.units.get(unitId);
    if (!m) throw new Error(`no simulated meter ${unitId}`);
    return m;
  }

  /** The register window a request reads, or undefined when the unit does not answer. */
  read(unitId: number, address: number, length: number): number[] | 'exception' | undefined {
    this.requests += 1;
    const meter = this.units.get(unitId);
    if (!meter || meter.mode === 'silent') return undefined;
    if (meter.mode === 'exception') return 'exception';
    const map = METER_REGISTER_MAPS[meter.model];
    const registers = new Map<number, number>();
    const put = (at: number, value: number) => {
      const [high, low] = encodeFloat32Registers(value);
      registers.set(at, high);
      registers.set(at + 1, low);
    };
    put(map.importEnergyKwh, meter.kwh);
    put(map.activePowerW, meter.powerW);
    return Array.from({ length }, (_, i) => registers.get(address + i) ?? 0);
  }

  /** The service vector modbus-serial's servers call (callback form, so a unit can stay silent). */
  vector() {
    return {
      getMultipleInputRegisters: (
        address: number,
        length: number,
        unitId: number,
        callback: (error: Error | null, values: number[]) => void,
      ) => {
        const answer = this.read(unitId, address, length);
        if (answer === undefined) return; // no reply at all: the client times out
        if (answer === 'exception') callback(new Error('slave device failure'), []);
        else callback(null, answer);
      },
    };
  }
}

export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface RunningModbusServer {
  readonly port: string;
  close(): Promise<void>;
}

/** Modbus TCP on 127.0.0.1; `port` is the driver's `tcp:127.0.0.1:<n>` form. */
export async function startModbusTcpServer(bank: MeterBank): Promise<RunningModbusServer> {
  const tcpPort = await freeTcpPort();
  const server = new ServerTCP(bank.vector(), { host: '127.0.0.1', port: tcpPort, unitID: 255 });
  await new Promise<void>((resolve, reject) => {
    server.on('initialized', () => resolve());
    server.on('serverError', (error) => reject(error));
  });
  server.on('error', () => {});
  server.on('socketError', () => {});
  return {
    port: `tcp:127.0.0.1:${tcpPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const sock of server.socks.keys()) sock.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Modbus RTU on one end of a pty pair (the driver opens the other end as its serial port). */
export async function startModbusRtuServer(bank: MeterBank, ptyPath: string, baudRate: number) {
  const server = new ServerSerial(bank.vector(), { path: ptyPath, baudRate, unitID: 255 });
  await new Promise<void>((resolve, reject) => {
    server.on('initialized', () => resolve());
    server.on('error', (error) => reject(error));
  });
  return {
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
