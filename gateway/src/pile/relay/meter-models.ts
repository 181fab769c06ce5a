/**
 * Modbus register maps of the Eastron SDM DIN-rail meter family (MID-approved variants exist for
 * each), and the pure decoding of their values. Every value the driver uses is an IEEE-754
 * float32 in two **input registers** (function code 04), high word first, big-endian bytes; the
 * addresses are the protocol (0-based) addresses from Eastron's Modbus protocol sheets:
 *
 * | model    | phases | total import energy (kWh) | total active power (W) |
 * | -------- | ------ | ------------------------- | ---------------------- |
 * | `sdm120` | 1      | 0x0048                    | 0x000C                 |
 * | `sdm230` | 1      | 0x0048                    | 0x000C                 |
 * | `sdm72d` | 3      | 0x0048                    | 0x0034                 |
 * | `sdm630` | 3      | 0x0048                    | 0x0034                 |
 *
 * A float32 has a 24-bit mantissa: the kWh register resolves 1 Wh only below 16 777.216 kWh;
 * above that a step is 2 Wh, above 33 554 kWh 4 Wh, and so on (the meter itself counts finer; the
 * float32 output is what limits it). Unit id (factory 1), baud rate (factory 2400 or 9600
 * depending on model) and parity are set on the meter's front panel; check them there.
 * @module
 */

export const METER_MODELS = ['sdm120', 'sdm230', 'sdm72d', 'sdm630'] as const;
export type MeterModel = (typeof METER_MODELS)[number];

export interface MeterRegisterMap {
  /** Input register of total import active energy, float32 kWh. */
  readonly importEnergyKwh: number;
  /** Input register of total active power, float32 W. */
  readonly activePowerW: number;
}

export const METER_REGISTER_MAPS: Readonly<Record<MeterModel, MeterRegisterMap>> = {
  sdm120: { importEnergyKwh: 0x0048, activePowerW: 0x000c },
  sdm230: { importEnergyKwh: 0x0048, activePowerW: 0x000c },
  sdm72d: { importEnergyKwh: 0x0048, activePowerW: 0x0034 },
  sdm630: { importEnergyKwh: 0x0048, activePowerW: 0x0034 },
};

/** Decodes a float32 from two registers (high word first, each big-endian). */
export function decodeFloat32Registers(high: number, low: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint16(0, high);
  view.setUint16(2, low);
  return view.getFloat32(0);
}

/** The two registers (high word first) of a float32 — what a meter serves; used by tests. */
export function encodeFloat32Registers(value: number): readonly [number, number] {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value);
  return [view.getUint16(0), view.getUint16(2)];
}

/** kWh register → integer Wh (nearest; the float's own error is below 1 Wh under 16 777 kWh). */
export function kwhToWh(kwh: number): number {
  return Math.round(kwh * 1000);
}
