/**
 * An EnergyMeter read over Modbus (RTU or TCP) with one of the register maps in
 * `meter-models.ts`. Each read fetches the import-energy and power registers of one unit and
 * checks them: finite, non-negative energy, and a register that never runs backwards (a smaller
 * value means a swapped meter or a misread, and billing from it would be wrong).
 * @module
 */

import { type EnergyMeter, MeterError, type MeterSample } from './meter.ts';
import { decodeFloat32Registers, kwhToWh, METER_REGISTER_MAPS, type MeterModel } from './meter-models.ts';
import type { ModbusBus } from './modbus-bus.ts';

export interface ModbusMeterOptions {
  readonly unitId: number;
  readonly model: MeterModel;
  readonly meterId: string;
}

async function readFloat(bus: ModbusBus, unitId: number, address: number): Promise<number> {
  const words = await bus.readInputRegisters(unitId, address, 2);
  return decodeFloat32Registers(words[0] as number, words[1] as number);
}

export function createModbusMeter(bus: ModbusBus, options: ModbusMeterOptions): EnergyMeter {
  const map = METER_REGISTER_MAPS[options.model];
  let highestWh = -1;
  const label = `${options.model} unit ${options.unitId}`;
  return {
    meterId: options.meterId,
    async read(): Promise<MeterSample> {
      const kwh = await readFloat(bus, options.unitId, map.importEnergyKwh);
      const watts = await readFloat(bus, options.unitId, map.activePowerW);
      if (!Number.isFinite(kwh) || kwh < 0) {
        throw new MeterError('implausible', `${label}: energy register reads ${kwh} kWh`);
      }
      if (!Number.isFinite(watts)) throw new MeterError('implausible', `${label}: power reads ${watts} W`);
      const energyWh = kwhToWh(kwh);
      if (energyWh < highestWh) {
        throw new MeterError(
          'implausible',
          `${label}: energy register went backwards (${highestWh} Wh → ${energyWh} Wh)`,
        );
      }
      highestWh = energyWh;
      return { energyWh, powerW: Math.max(0, Math.round(watts)) };
    },
    async close() {},
  };
}
