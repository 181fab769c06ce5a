/**
 * The OCPP 1.6J pile driver (the gateway as local central system) over loopback WebSocket,
 * against a charge point scripted on ocpp-rpc's RPCClient in strict mode — every message both
 * ways validated against the official OCPP 1.6 JSON schemas by code that is not ours. Boot,
 * heartbeat, status, remote start (Authorize → StartTransaction) with a TxProfile, meter values
 * in Wh and kWh with signed (OCMF) data, remote stop, refusals, faults, unplug, lost links and
 * missed heartbeats, reconnects with and without a queued StopTransaction, a transaction found
 * at start-up, schema-invalid messages, admission, the pure meter/status mapping, the config
 * section's errors, and one session through the gateway's charging code end to end.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RPCClient } from 'ocpp-rpc';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../gateway/src/config.ts';
import type { PileEvent } from '../../gateway/src/contracts.ts';
import { startGateway } from '../../gateway/src/gateway.ts';
import { pinRootKey } from '../../gateway/src/keys.ts';
import { InProcessTransport } from '../../gateway/src/link/in-process.ts';
import {
  createOcppPileDriver,
  type OcppPileDriver,
  type OcppPileDriverOptions,
} from '../../gateway/src/pile/ocpp/driver.ts';
import { OcppPileError, type OcppPileErrorCode } from '../../gateway/src/pile/ocpp/errors.ts';
import { energyToWh, powerToW, readMeterValues } from '../../gateway/src/pile/ocpp/meter-values.ts';
import { isFault, isUnavailable, pluggedOf } from '../../gateway/src/pile/ocpp/status.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  PhoneSession,
  parseReceipt,
  SessionState,
  StopReason,
  toHex,
  verifyReceipt,
} from '../../shared/src/index.ts';
import { buildWorld, derivedScalar, issueTestVoucher, T0, type World } from '../support/world.ts';
import {
  initialRegister,
  ScriptedChargePoint,
  type ScriptedChargePointOptions,
} from './support/ocpp-charge-point.ts';

const CP_ID = 'CP-TEST-1';
const METER_SERIAL = 'MTR-0001';
const OCMF = (wh: number) =>
  `OCMF|{"FV":"1.0","GI":"SCRIPTED","MS":"${METER_SERIAL}","RD":[{"TM":"2026-11-17T09:46:40,000+0000 S","RV":${wh / 1000},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}|{"SD":"3045022100AB"}`;
const bytes = (text: string) => new TextEncoder().encode(text);
/** The driver's injected clock (T0) as OCPP's currentTime. */
const NOW_ISO = new Date(T0 * 1000).toISOString();

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setup(
  options: Partial<OcppPileDriverOptions> = {},
  cpOptions: Partial<ScriptedChargePointOptions> = {},
): Promise<{ driver: OcppPileDriver; cp: ScriptedChargePoint }> {
  const driver = await createOcppPileDriver({
    chargePointId: CP_ID,
    connectors: [1],
    now: () => T0,
    host: '127.0.0.1',
    port: 0,
    startupWaitMs: 0,
    requestTimeoutMs: 2_000,
    startTimeoutMs: 2_000,
    stopTimeoutMs: 2_000,
    livenessTimeoutMs: 30_000,
    ...options,
  });
  cleanups.push(() => driver.close());
  const cp = new ScriptedChargePoint({
    url: driver.url,
    connectors: options.connectors ?? [1],
    meterSerialNumber: METER_SERIAL,
    ...cpOptions,
  });
  cleanups.push(() => cp.disconnect());
  return { driver, cp };
}

/** Connects and boots the charge point with connector 1 plugged, then reads it once (synced). */
async function online(driver: OcppPileDriver, cp: ScriptedChargePoint, plugged = true) {
  await cp.connect();
  if (plugged) await cp.status(1, 'Preparing');
  return driver.read(1);
}

/** Starts a transaction on connector 1 and waits until the charge point has its id. */
async function startSession(driver: OcppPileDriver, cp: ScriptedChargePoint): Promise<number> {
  await driver.start(1, { maxEnergyWh: 20_000 });
  const started = await cp.waitSent('StartTransaction', (p) => p.connectorId === 1);
  return started.result.transactionId as number;
}

function nextEvent(driver: OcppPileDriver, match: (event: PileEvent) => boolean, timeoutMs = 5_000) {
  return new Promise<PileEvent>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no matching pile event'));
    }, timeoutMs);
    const off = driver.onEvent((event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

const readingWhere =
  (check: (r: Extract<PileEvent, { kind: 'reading' }>['reading']) => boolean) => (e: PileEvent) =>
    e.kind === 'reading' && check(e.reading);

async function expectCode(promise: Promise<unknown>, code: OcppPileErrorCode): Promise<OcppPileError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(OcppPileError);
  expect((error as OcppPileError).code).toBe(code);
  return error as OcppPileError;
}

/** Sends a raw OCPP-J frame past the client's own validation and returns the gateway's answer. */
function rawCall(client: RPCClient, frame: string, id: string): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${id}`)), 5_000);
    const onMessage = (e: { message: string; outbound: boolean }) => {
      if (e.outbound) return;
      const parsed = JSON.parse(e.message) as unknown[];
      if (parsed[1] !== id) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(parsed);
    };
    client.on('message', onMessage);
    client.sendRaw(frame);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('OCPP driver: boot, heartbeat, status', () => {
  it('accepts BootNotification with the heartbeat interval and the injected clock, configures the pile', async () => {
    const { driver, cp } = await setup({ heartbeatSeconds: 45, meterSampleSeconds: 15 });
    await cp.connect({ boot: false });
    const boot = await cp.boot();
    expect(boot).toEqual({ status: 'Accepted', currentTime: NOW_ISO, interval: 45 });
    expect(await cp.heartbeat()).toEqual({ currentTime: NOW_ISO });
    expect(driver.chargePoint).toMatchObject({
      vendor: 'ScriptedVendor',
      model: 'Model-1',
      serialNumber: 'CP-SERIAL-1',
      meterSerialNumber: METER_SERIAL,
    });
    await cp.waitReceived('ChangeConfiguration', (p) => p.key === 'AuthorizationCacheEnabled');
    const config = Object.fromEntries(
      cp.received
        .filter((c) => c.method === 'ChangeConfiguration')
        .map((c) => [c.params.key, c.params.value]),
    );
    expect(config).toMatchObject({
      MeterValueSampleInterval: '15',
      StopTransactionOnInvalidId: 'true',
      AllowOfflineTxForUnknownId: 'false',
      LocalAuthorizeOffline: 'false',
    });
    const reading = await driver.read(1);
    expect(reading).toMatchObject({
      connector: 1,
      contactorOn: false,
      plugged: false, // Available
      faulted: false,
      meterWh: initialRegister(1),
      meterId: METER_SERIAL,
      powerW: 0,
    });
    // The register was not known: read() asked for it.
    expect(
      cp.received.some((c) => c.method === 'TriggerMessage' && c.params.requestedMessage === 'MeterValues'),
    ).toBe(true);
  });

  it('maps status: Preparing is plugged, Available after a plug is an unplug event, Unavailable reads as faulted', async () => {
    const { driver, cp } = await setup({ connectors: [1, 2] }, { connectors: [1, 2] });
    await online(driver, cp);
    expect(await driver.read(1)).toMatchObject({ plugged: true, contactorOn: false, faulted: false });
    expect((await driver.read(2)).meterId).toBe(`${METER_SERIAL}/2`); // one meter serial, two registers
    const unplugged = nextEvent(driver, (e) => e.kind === 'unplugged');
    await cp.status(1, 'Available');
    expect(await unplugged).toEqual({ kind: 'unplugged', connector: 1 });
    expect((await driver.read(1)).plugged).toBe(false);
    await cp.status(2, 'Unavailable');
    expect(await driver.read(2)).toMatchObject({ faulted: true, plugged: undefined });
    await expectCode(driver.start(2, {}), 'faulted');
  });

  it('a Faulted status is a fault event with the error codes, reads as faulted and refuses start', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    const fault = nextEvent(driver, (e) => e.kind === 'fault');
    await cp.status(1, 'Faulted', 'GroundFailure', { vendorErrorCode: 'E12', info: 'RCD tripped' });
    expect(await fault).toEqual({
      kind: 'fault',
      connector: 1,
      detail: 'Faulted GroundFailure (vendor E12): RCD tripped',
    });
    expect((await driver.read(1)).faulted).toBe(true);
    const refused = await expectCode(driver.start(1, {}), 'faulted');
    expect(refused.message).toContain('GroundFailure');
    expect(cp.received.some((c) => c.method === 'RemoteStartTransaction')).toBe(false);
    // The pile recovers: the connector is usable again.
    await cp.status(1, 'Preparing');
    expect((await driver.read(1)).faulted).toBe(false);
    // Connector 0 is the whole charge point.
    const whole = nextEvent(driver, (e) => e.kind === 'fault');
    await cp.call('StatusNotification', { connectorId: 0, status: 'Faulted', errorCode: 'InternalError' });
    expect(await whole).toMatchObject({ connector: 1, detail: 'charge point Faulted InternalError' });
    expect((await driver.read(1)).faulted).toBe(true);
  });
});

describe('OCPP driver: a session', () => {
  it('remote start with a minted idTag and TxProfile, meter values in kWh with OCMF, remote stop on the final register', async () => {
    const { driver, cp } = await setup({ chargingLimit: { unit: 'W', value: 7400 } }, { energyUnit: 'kWh' });
    cp.behaviour.signedData = (_c, wh) => OCMF(wh);
    expect(await online(driver, cp)).toMatchObject({ plugged: true, contactorOn: false });

    const transactionId = await startSession(driver, cp);
    const remote = await cp.waitReceived('RemoteStartTransaction');
    const idTag = remote.params.idTag as string;
    expect(idTag).toMatch(/^PP[0-9A-F]{18}$/);
    expect(remote.params).toEqual({
      connectorId: 1,
      idTag,
      chargingProfile: {
        chargingProfileId: expect.any(Number),
        stackLevel: 0,
        chargingProfilePurpose: 'TxProfile',
        chargingProfileKind: 'Relative',
        chargingSchedule: {
          chargingRateUnit: 'W',
          chargingSchedulePeriod: [{ startPeriod: 0, limit: 7400 }],
        },
      },
    });
    expect((await cp.waitSent('Authorize')).result).toEqual({ idTagInfo: { status: 'Accepted' } });
    expect((await cp.waitSent('StartTransaction')).result).toEqual({
      transactionId,
      idTagInfo: { status: 'Accepted' },
    });
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, meterWh: initialRegister(1) });

    const metered = nextEvent(
      driver,
      readingWhere((r) => r.meterWh === initialRegister(1) + 1234),
    );
    cp.deliver(1, 1234);
    await cp.meterValues(1, { powerW: 7000 });
    const event = await metered;
    if (event.kind !== 'reading') throw new Error('not a reading');
    expect(event.reading).toMatchObject({ contactorOn: true, powerW: 7000, plugged: true });
    expect(event.reading.signedMeterData).toEqual(bytes(OCMF(initialRegister(1) + 1234)));

    cp.deliver(1, 66);
    await driver.stop(1);
    const stopAsked = await cp.waitReceived('RemoteStopTransaction');
    expect(stopAsked.params).toEqual({ transactionId });
    const stopped = await cp.waitSent('StopTransaction');
    expect(stopped.params.meterStop).toBe(initialRegister(1) + 1300);
    const after = await driver.read(1);
    expect(after).toMatchObject({ contactorOn: false, meterWh: initialRegister(1) + 1300, powerW: 0 });
    expect(after.signedMeterData).toEqual(bytes(OCMF(initialRegister(1) + 1300)));
    // A second start mints a new idTag.
    await cp.waitSent('StatusNotification', (p) => p.status === 'Finishing');
    await startSession(driver, cp);
    const second = cp.received.filter((c) => c.method === 'RemoteStartTransaction')[1];
    expect(second?.params.idTag).not.toBe(idTag);
    expect(cp.errors).toEqual([]);
  });

  it('Authorize and StartTransaction for an idTag the gateway did not issue are Invalid, and that transaction is stopped', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    expect(await cp.call('Authorize', { idTag: 'RFID-CARD-0042' })).toEqual({
      idTagInfo: { status: 'Invalid' },
    });
    const answer = await cp.call('StartTransaction', {
      connectorId: 1,
      idTag: 'RFID-CARD-0042',
      meterStart: initialRegister(1),
      timestamp: new Date().toISOString(),
    });
    expect(answer).toMatchObject({ idTagInfo: { status: 'Invalid' }, transactionId: expect.any(Number) });
    const transactionId = answer.transactionId as number;
    cp.connector(1).transactionId = transactionId; // the pile runs it until told otherwise
    const stopAsked = await cp.waitReceived('RemoteStopTransaction');
    expect(stopAsked.params).toEqual({ transactionId });
    await cp.waitSent('StopTransaction', (p) => p.transactionId === transactionId);
    expect((await driver.read(1)).contactorOn).toBe(false);
  });

  it('start refusals: RemoteStart Rejected, unknown connector, busy, bad maxEnergyWh', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    cp.behaviour.remoteStart = 'reject';
    const rejected = await expectCode(driver.start(1, {}), 'rejected');
    expect(rejected.message).toContain('RemoteStartTransaction Rejected');
    await expectCode(driver.start(3, {}), 'unknown-connector');
    await expectCode(driver.read(3), 'unknown-connector');
    await expect(driver.start(1, { maxEnergyWh: 0 })).rejects.toBeInstanceOf(RangeError);
    cp.behaviour.remoteStart = 'accept';
    await startSession(driver, cp);
    await expectCode(driver.start(1, {}), 'busy');
  });

  it('no StartTransaction in time: start rejects, and a late StartTransaction is refused and stopped', async () => {
    const { driver, cp } = await setup({ startTimeoutMs: 300 });
    await online(driver, cp);
    cp.behaviour.remoteStart = 'accept-but-never-start';
    const error = await expectCode(driver.start(1, {}), 'timeout');
    expect(error.message).toContain('no StartTransaction within 300 ms');
    const idTag = (await cp.waitReceived('RemoteStartTransaction')).params.idTag as string;
    expect(await cp.call('Authorize', { idTag })).toEqual({ idTagInfo: { status: 'Invalid' } });
    const late = await cp.call('StartTransaction', {
      connectorId: 1,
      idTag,
      meterStart: initialRegister(1),
      timestamp: new Date().toISOString(),
    });
    expect(late.idTagInfo).toEqual({ status: 'Invalid' });
    cp.connector(1).transactionId = late.transactionId as number;
    expect((await cp.waitReceived('RemoteStopTransaction')).params).toEqual({
      transactionId: late.transactionId,
    });
  });

  it('a refused stop sets the connector Inoperative, rejects as unconfirmed and reads as faulted until the pile stops', async () => {
    const { driver, cp } = await setup({ stopTimeoutMs: 300 });
    await online(driver, cp);
    await startSession(driver, cp);
    cp.behaviour.remoteStop = 'reject';
    const fault = nextEvent(driver, (e) => e.kind === 'fault');
    await expectCode(driver.stop(1), 'stop-unconfirmed');
    expect((await cp.waitReceived('ChangeAvailability')).params).toEqual({
      connectorId: 1,
      type: 'Inoperative',
    });
    expect(await fault).toMatchObject({
      connector: 1,
      detail: expect.stringContaining('no StopTransaction'),
    });
    expect(await driver.read(1)).toMatchObject({ faulted: true, contactorOn: true });
    await expectCode(driver.start(1, {}), 'busy');
    const off = nextEvent(
      driver,
      readingWhere((r) => !r.contactorOn && !r.faulted),
    );
    await cp.stopTransaction(1, 'Local');
    await off;
  });

  it('read() refreshes a stale register with TriggerMessage(MeterValues) and fails closed when it cannot', async () => {
    const { driver, cp } = await setup({ meterMaxAgeMs: 0 });
    await online(driver, cp);
    cp.deliver(1, 42); // the pile's register moved; no MeterValues sent by itself
    expect((await driver.read(1)).meterWh).toBe(initialRegister(1) + 42);
    cp.behaviour.triggers.clear();
    // No transaction: the register cannot have moved, the last value stands.
    expect((await driver.read(1)).meterWh).toBe(initialRegister(1) + 42);
    await startSession(driver, cp);
    await expectCode(driver.read(1), 'stale-meter');
  });

  it('no meter value at all: read() rejects rather than invent a register', async () => {
    const { driver, cp } = await setup();
    cp.behaviour.triggers.delete('MeterValues');
    await cp.connect();
    const error = await expectCode(driver.read(1), 'no-meter-value');
    expect(error.message).toContain('connector 1');
  });
});

describe('OCPP driver: meter values', () => {
  it('Wh and kWh registers become integer Wh exactly (rounded down), power W or kW, per-phase and EV values skipped', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    const send = async (sampledValue: Record<string, unknown>[]) => {
      const seen = nextEvent(driver, (e) => e.kind === 'reading');
      await cp.meterValues(1, { sampledValue });
      const event = await seen;
      return event.kind === 'reading' ? event.reading.meterWh : -1;
    };
    expect(await send([{ value: '1011234.9', unit: 'Wh' }])).toBe(1_011_234);
    expect(
      await send([{ value: '1011.2349', unit: 'kWh', measurand: 'Energy.Active.Import.Register' }]),
    ).toBe(1_011_234);
    expect(await send([{ value: '1012.001', unit: 'kWh' }])).toBe(1_012_001); // not 1 012 000.999…
    expect(
      await send([
        { value: '5.000', unit: 'kWh', phase: 'L1' },
        { value: '99.000', unit: 'kWh', location: 'EV' },
        { value: '1013.5', unit: 'kWh' },
      ]),
    ).toBe(1_013_500);
    // Unusable values leave the register as it was.
    expect(await send([{ value: '-5', unit: 'Wh' }])).toBe(1_013_500);
  });

  it('pure parsing: decimals, units, signed data, latest timestamp wins', () => {
    expect(energyToWh('1.001', 'kWh')).toBe(1001);
    expect(energyToWh('0.0009', 'kWh')).toBe(0);
    expect(energyToWh('12', undefined)).toBe(12);
    expect(energyToWh('1e3', 'Wh')).toBeUndefined();
    expect(energyToWh('abc', 'Wh')).toBeUndefined();
    expect(energyToWh('5', 'varh')).toBeUndefined();
    expect(powerToW('7.4', 'kW')).toBe(7400);
    expect(powerToW('7399.5', 'W')).toBe(7400);
    expect(powerToW('7399.49', 'W')).toBe(7399);
    expect(powerToW('3', 'A')).toBeUndefined();
    const sample = readMeterValues([
      {
        timestamp: '2026-11-17T09:47:00Z',
        sampledValue: [{ value: '2000' }, { value: 'OCMF|{}|{}', format: 'SignedData' }],
      },
      { timestamp: '2026-11-17T09:46:00Z', sampledValue: [{ value: '1000' }, { value: '9', unit: 'kWh' }] },
    ]);
    expect(sample).toEqual({ energyWh: 2000, signedData: 'OCMF|{}|{}', skipped: [] });
    expect(
      readMeterValues([{ timestamp: 'x', sampledValue: [{ value: '1', unit: 'varh' }] }]).skipped,
    ).toEqual(['Energy.Active.Import.Register "1" varh']);
  });

  it('pure status mapping', () => {
    expect(pluggedOf('Preparing')).toBe(true);
    expect(pluggedOf('SuspendedEV')).toBe(true);
    expect(pluggedOf('Available')).toBe(false);
    expect(pluggedOf('Faulted')).toBeUndefined();
    expect(isFault({ status: 'Charging', errorCode: 'PowerMeterFailure' })).toBe(true);
    expect(isFault({ status: 'Charging', errorCode: 'WeakSignal' })).toBe(false);
    expect(isUnavailable({ status: 'Reserved', errorCode: 'NoError' })).toBe(true);
  });
});

describe('OCPP driver: links', () => {
  it('a closed WebSocket is connection-lost; pending start, read and stop reject', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    cp.behaviour.remoteStart = 'accept-but-never-start';
    const starting = expectCode(driver.start(1, {}), 'link-lost');
    await cp.waitReceived('RemoteStartTransaction');
    const lost = nextEvent(driver, (e) => e.kind === 'connection-lost');
    await cp.disconnect();
    await lost;
    expect(driver.connected).toBe(false);
    await starting;
    await expectCode(driver.read(1), 'not-connected');
    await expectCode(driver.stop(1), 'not-connected');
  });

  it('missed heartbeats are connection-lost and the socket is dropped; heartbeats keep it', async () => {
    const { driver, cp } = await setup({ livenessTimeoutMs: 300 });
    await online(driver, cp);
    let lostAt: number | undefined;
    driver.onEvent((e) => {
      if (e.kind === 'connection-lost') lostAt ??= performance.now();
    });
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100)); // a heartbeat every 100 ms: alive
      await cp.heartbeat();
    }
    expect(lostAt).toBeUndefined();
    const silentFrom = performance.now();
    const closed = new Promise((resolve) => cp.once('closed', resolve));
    await nextEvent(driver, (e) => e.kind === 'connection-lost');
    expect(lostAt! - silentFrom).toBeGreaterThanOrEqual(250);
    await closed; // the gateway dropped the socket; the pile will reconnect
    expect(driver.connected).toBe(false);
  });

  it('reconnect with a queued StopTransaction settles the transaction on its meterStop', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    const transactionId = await startSession(driver, cp);
    const lost = nextEvent(driver, (e) => e.kind === 'connection-lost');
    await cp.disconnect();
    await lost;
    await expectCode(driver.stop(1), 'not-connected'); // what the gateway does on connection-lost
    cp.deliver(1, 300); // the pile kept charging offline, then the driver unplugged
    await cp.stopTransaction(1, 'EVDisconnected'); // queued
    const mark = cp.received.length;
    const settled = nextEvent(
      driver,
      readingWhere((r) => !r.contactorOn && r.meterWh === initialRegister(1) + 300),
    );
    await cp.connect();
    await settled;
    expect((await cp.waitSent('StopTransaction')).params).toMatchObject({
      transactionId,
      reason: 'EVDisconnected',
    });
    expect(await driver.read(1)).toMatchObject({ contactorOn: false, faulted: false, plugged: true });
    expect(cp.received.slice(mark).some((c) => c.method === 'RemoteStopTransaction')).toBe(false);
  });

  it('reconnect with the transaction still running: a stop asked for while offline is carried out', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    const transactionId = await startSession(driver, cp);
    await cp.disconnect();
    await expectCode(driver.stop(1), 'not-connected');
    cp.deliver(1, 120);
    const off = nextEvent(
      driver,
      readingWhere((r) => !r.contactorOn && r.meterWh === initialRegister(1) + 120),
    );
    await cp.connect({ boot: false });
    expect((await cp.waitReceived('RemoteStopTransaction')).params).toEqual({ transactionId });
    await off;
  });

  it('reconnect without a stop request leaves the transaction to the gateway', async () => {
    const { driver, cp } = await setup({ meterMaxAgeMs: 0 }); // reads go through the pile, in order
    await online(driver, cp);
    await startSession(driver, cp);
    await cp.disconnect();
    await cp.connect({ boot: false });
    await driver.read(1); // a stop decided on at reconnect would be queued before the next read's call
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, faulted: false });
    expect(cp.received.some((c) => c.method === 'RemoteStopTransaction')).toBe(false);
  });

  it('a transaction found at start-up (gateway restarted) is reported on, left to the recovery, and stoppable', async () => {
    const port = await freePort();
    const { driver: first, cp } = await setup({ port });
    await online(first, cp);
    const transactionId = await startSession(first, cp);
    await cp.disconnect(); // the gateway dies: the pile keeps its transaction
    await first.close();
    cp.deliver(1, 700);

    const next = createOcppPileDriver({
      chargePointId: CP_ID,
      connectors: [1],
      now: () => T0,
      host: '127.0.0.1',
      port,
      startupWaitMs: 5_000,
      requestTimeoutMs: 2_000,
      stopTimeoutMs: 2_000,
      // Every read asks the pile (TriggerMessage): calls are answered in order, so once a read
      // returns, any stop the driver had decided on would have reached the pile already.
      meterMaxAgeMs: 0,
    });
    cleanups.push(async () => (await next).close());
    for (let attempt = 0; ; attempt++) {
      try {
        await cp.connect({ boot: false }); // a reconnect, not a reboot
        break;
      } catch (err) {
        if (attempt > 100) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20)); // until the new endpoint listens
      }
    }
    const second = await next;
    expect(second.chargePoint?.meterSerialNumber).toBe(METER_SERIAL); // asked for with TriggerMessage
    await second.read(1); // a stop decided on at connect would be queued before the next read's call
    expect(await second.read(1)).toMatchObject({
      contactorOn: true,
      meterWh: initialRegister(1) + 700,
      meterId: METER_SERIAL,
    });
    expect(cp.received.some((c) => c.method === 'RemoteStopTransaction')).toBe(false);
    await second.stop(1);
    expect((await cp.waitReceived('RemoteStopTransaction')).params).toEqual({ transactionId });
    expect((await second.read(1)).contactorOn).toBe(false);
  });

  it('schema-invalid and malformed messages from the charge point get a CALLERROR; the driver carries on', async () => {
    const { driver, cp } = await setup();
    await online(driver, cp);
    const client = cp.client;
    const badStatus = await rawCall(
      client,
      JSON.stringify([
        2,
        'bad-1',
        'StatusNotification',
        { connectorId: 1, errorCode: 'NoError', status: 'Sleeping' },
      ]),
      'bad-1',
    );
    expect(badStatus.slice(0, 3)).toEqual([4, 'bad-1', 'FormationViolation']);
    const missing = await rawCall(
      client,
      JSON.stringify([2, 'bad-2', 'StartTransaction', { connectorId: 1, idTag: 'X', timestamp: 'now' }]),
      'bad-2',
    );
    expect(missing[0]).toBe(4);
    expect(missing[2]).toMatch(/Violation/);
    const wrongType = await rawCall(
      client,
      JSON.stringify([2, 'bad-3', 'MeterValues', { connectorId: '1', meterValue: [] }]),
      'bad-3',
    );
    expect(wrongType.slice(0, 3)).toEqual([4, 'bad-3', 'TypeConstraintViolation']);
    const unknown = await rawCall(client, JSON.stringify([2, 'bad-4', 'SelfDestruct', {}]), 'bad-4');
    expect(unknown[0]).toBe(4);
    const garbage = await rawCall(client, 'this is not json', '-1');
    expect(garbage.slice(0, 3)).toEqual([4, '-1', 'RpcFrameworkError']);
    // Nothing reached the driver's state, and it still works.
    expect(driver.connected).toBe(true);
    expect(await driver.read(1)).toMatchObject({ plugged: true, faulted: false, contactorOn: false });
    expect(await cp.heartbeat()).toEqual({ currentTime: NOW_ISO });
  });

  it('admission: wrong identity or path, no ocpp1.6 subprotocol, wrong or no password are refused', async () => {
    const password = 'station-secret-0123';
    const { driver } = await setup({ password });
    const attempt = async (options: Partial<ScriptedChargePointOptions>) => {
      const cp = new ScriptedChargePoint({ url: driver.url, password, ...options });
      cleanups.push(() => cp.disconnect());
      return cp.connect({ boot: false });
    };
    await expect(attempt({ identity: 'CP-OTHER' })).rejects.toMatchObject({ code: 404 });
    await expect(attempt({ url: driver.url.replace('/ocpp/', '/other/') })).rejects.toMatchObject({
      code: 404,
    });
    await expect(attempt({ protocols: ['ocpp2.0.1'] })).rejects.toMatchObject({ code: 400 });
    await expect(attempt({ password: 'station-secret-9999' })).rejects.toMatchObject({ code: 401 });
    await expect(attempt({ password: undefined })).rejects.toMatchObject({ code: 401 });
    expect(driver.connected).toBe(false);
    await attempt({});
    expect(driver.connected).toBe(true);
  });
});

describe('OCPP config section', () => {
  const base = { gatewayId: 'gw-ocpp', pile: 'ocpp' };
  const errorOf = (input: Record<string, unknown>) => {
    try {
      parseConfig(input);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('config accepted');
  };

  it('defaults, and pile "ocpp" requires the section', () => {
    const config = parseConfig({ ...base, ocpp: { chargePointId: 'CP-1' } });
    expect(config.ocpp).toMatchObject({
      host: '0.0.0.0',
      port: 9000,
      path: '/ocpp',
      heartbeatSeconds: 60,
      missedHeartbeats: 3,
    });
    expect(errorOf(base)).toContain('ocpp: required when pile is "ocpp"');
    expect(errorOf({ ...base, pile: 'ocpp:x' })).toContain(
      'pile: expected "sim", "sim:<socket path>", "ocpp", "relay" or "can"',
    );
  });

  it.each([
    [{ chargePointId: undefined }, 'ocpp.chargePointId: required'],
    [{ chargePointId: 'CP 1' }, 'ocpp.chargePointId: expected 1–48 of'],
    [{ host: 'bad host!' }, 'ocpp.host: expected an IPv4/IPv6 address or a host name'],
    [{ port: 70_000 }, 'ocpp.port: expected 1–65535'],
    [{ port: 80.5 }, 'ocpp.port: expected a whole TCP port number'],
    [{ path: 'ocpp/' }, 'ocpp.path: expected a URL path such as "/ocpp"'],
    [{ password: 'short' }, 'ocpp.password: expected 16–40 characters'],
    [{ heartbeatSeconds: 0 }, 'ocpp.heartbeatSeconds:'],
    [{ missedHeartbeats: 1 }, 'ocpp.missedHeartbeats:'],
    [{ meterSampleSeconds: 1.5 }, 'ocpp.meterSampleSeconds: expected whole seconds'],
    [{ requestTimeoutSeconds: 0 }, 'ocpp.requestTimeoutSeconds:'],
    [{ startTimeoutSeconds: 601 }, 'ocpp.startTimeoutSeconds:'],
    [{ stopTimeoutSeconds: -1 }, 'ocpp.stopTimeoutSeconds:'],
    [{ startupWaitSeconds: 'soon' }, 'ocpp.startupWaitSeconds:'],
    [{ chargingLimit: { unit: 'kW', value: 7 } }, 'ocpp.chargingLimit.unit: expected "W" or "A"'],
    [{ chargingLimit: { unit: 'A', value: 16.5 } }, 'ocpp.chargingLimit.value: expected a whole number'],
    [{ configureChargePoint: 'yes' }, 'ocpp.configureChargePoint:'],
    [{ tls: true }, 'Unrecognized key'],
  ])('ocpp %j → %s', (fields, message) => {
    expect(errorOf({ ...base, ocpp: { chargePointId: 'CP-1', ...fields } })).toContain(message);
  });
});

describe('OCPP driver under the gateway: paid sessions end to end', () => {
  const seed = 'gateway-tests';

  /** A data dir with the test world's gateway key and root key, removed after the test. */
  async function station() {
    const world = await buildWorld(nodeCrypto, seed);
    const dataDir = mkdtempSync(join(tmpdir(), 'pilepass-ocpp-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    writeFileSync(
      join(dataDir, 'gateway-key.json'),
      JSON.stringify({ privateKey: toHex(derivedScalar(seed, 'gateway')) }),
      { mode: 0o600 },
    );
    pinRootKey(dataDir, { kid: world.root.kid, publicKey: world.root.key.publicKey });
    return { world, dataDir };
  }

  /** The gateway with `pile: "ocpp"` from its config, the in-process BLE transport. */
  async function gatewayWithOcpp(world: World, dataDir: string, ocpp: Record<string, unknown>) {
    const config = parseConfig({
      gatewayId: world.gateway.id,
      dataDir,
      ble: 'in-process',
      pile: 'ocpp',
      connectors: [1],
      logLevel: 'silent',
      ocpp: { host: '127.0.0.1', port: 0, chargePointId: 'CP-E2E', startupWaitSeconds: 0, ...ocpp },
    });
    const transport = new InProcessTransport();
    const gateway = await startGateway(config, { transport, systemNow: () => T0 + 60 });
    cleanups.push(() => gateway.stop());
    if (gateway.sync.bundleVersion === undefined) await gateway.sync.installBundle(world.bundle.bytes);
    return { gateway, transport, driver: gateway.pile as OcppPileDriver };
  }

  /** A phone presents a fresh voucher at connector 1 and waits until it is charging. */
  async function chargeWithPhone(world: World, transport: InProcessTransport, hold: number) {
    const { voucher, deviceKey } = await issueTestVoucher(world, { hold: { amount: hold, currency: 'CNY' } });
    const session = new PhoneSession({
      crypto: nodeCrypto,
      link: transport.connect({ mtu: 185 }),
      voucherBytes: voucher.bytes,
      deviceKey,
    });
    const charging = session.next(
      (e) => e.kind === 'status' && e.status.state === SessionState.CHARGING,
      10_000,
    );
    await session.present(1);
    await charging;
    return { session, cti: voucher.claims.cti };
  }

  it('an authorized phone session starts the OCPP transaction, meters it and stops it at the hold', async () => {
    const { world, dataDir } = await station();
    const { gateway, transport, driver } = await gatewayWithOcpp(world, dataDir, {});
    const cp = new ScriptedChargePoint({ url: driver.url, meterSerialNumber: METER_SERIAL });
    cleanups.push(() => cp.disconnect());
    cp.behaviour.signedData = (_c, wh) => OCMF(wh);
    await cp.connect();
    await cp.status(1, 'Preparing');

    const { session } = await chargeWithPhone(world, transport, 500);
    const transactionId = (await cp.waitSent('StartTransaction')).result.transactionId as number;

    const receipt = session.next((e) => e.kind === 'receipt', 10_000);
    // The pile meters 250 Wh at a time until the gateway stops it at the hold (5.00 CNY at 1.60/kWh).
    const stopAsked = cp.waitReceived('RemoteStopTransaction', () => true, 0, 10_000);
    let stopRequested = false;
    void stopAsked.then(() => {
      stopRequested = true;
    });
    for (let i = 0; i < 40 && !stopRequested; i++) {
      cp.deliver(1, 250);
      await cp.meterValues(1, { powerW: 7000 });
    }
    expect((await stopAsked).params).toEqual({ transactionId });
    const event = await receipt;
    if (event.kind !== 'receipt') throw new Error('no receipt');
    await verifyReceipt(nodeCrypto, event.receipt, world.gateway.key.publicKey);
    const body = event.receipt.body;
    const meterStop = (await cp.waitSent('StopTransaction')).params.meterStop as number;
    expect(body.stopReason).toBe(StopReason.HOLD_REACHED);
    expect(body.meterId).toBe(METER_SERIAL);
    expect(body.meterStartWh).toBe(initialRegister(1));
    expect(body.meterStopWh).toBe(meterStop);
    expect(body.energyWh).toBe(meterStop - initialRegister(1));
    expect(body.chargedAmount).toBeLessThanOrEqual(500);
    expect(body.signedMeterData).toEqual(bytes(OCMF(meterStop)));
    expect(gateway.ledger.openSessions()).toHaveLength(0);
    expect(cp.errors).toEqual([]);
  });

  it('a gateway restart mid-session stops the transaction on shutdown and settles it on the register at start-up', async () => {
    const { world, dataDir } = await station();
    const port = await freePort();
    const first = await gatewayWithOcpp(world, dataDir, { port });
    const cp = new ScriptedChargePoint({ url: first.driver.url, meterSerialNumber: METER_SERIAL });
    cleanups.push(() => cp.disconnect());
    await cp.connect();
    await cp.status(1, 'Preparing');
    const { cti } = await chargeWithPhone(world, first.transport, 5_000);
    cp.deliver(1, 900);
    await cp.meterValues(1);

    await first.gateway.stop(); // closing the driver stops the transaction first
    const stopped = await cp.waitSent('StopTransaction');
    expect(stopped.params).toMatchObject({ meterStop: initialRegister(1) + 900, reason: 'Remote' });

    const restarting = gatewayWithOcpp(world, dataDir, { port, startupWaitSeconds: 5 });
    for (let attempt = 0; ; attempt++) {
      try {
        await cp.connect({ boot: false });
        break;
      } catch (err) {
        if (attempt > 100) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20)); // until the new endpoint listens
      }
    }
    const second = await restarting;
    expect(second.gateway.ledger.openSessions()).toHaveLength(0);
    const record = second.gateway.ledger.sessionByCti(cti);
    if (!record?.receipt) throw new Error('no receipt stored');
    const receipt = parseReceipt(record.receipt);
    expect(receipt.body.stopReason).toBe(StopReason.GATEWAY_RESTART);
    expect(receipt.body.energyWh).toBe(900);
    expect(cp.errors).toEqual([]);
  });
});

describe('OCPP driver in the real gateway process', () => {
  it('pilepass-gateway start with pile "ocpp" serves the charge point (plain Node ESM) and exits cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilepass-ocpp-cli-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const configPath = join(dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        gatewayId: 'gw-ocpp-cli',
        dataDir: join(dir, 'data'),
        ble: 'in-process',
        pile: 'ocpp',
        connectors: [1],
        logLevel: 'info',
        ocpp: { host: '127.0.0.1', port, chargePointId: 'CP-PROC', startupWaitSeconds: 0 },
      }),
    );
    const cli = new URL('../../gateway/bin/pilepass-gateway', import.meta.url).pathname;
    const child = spawn(cli, ['start', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = once(child, 'exit');
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stderr = '';
    const started = new Promise<void>((resolve, reject) => {
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk;
        if (stderr.includes('"msg":"gateway started"')) resolve();
      });
      void exited.then(() => reject(new Error(`gateway exited early:\n${stderr}`)));
    });
    await started;

    const cp = new ScriptedChargePoint({ url: `ws://127.0.0.1:${port}/ocpp/CP-PROC` });
    cleanups.push(() => cp.disconnect());
    await cp.connect({ boot: false });
    const boot = await cp.boot();
    expect(boot).toMatchObject({ status: 'Accepted', interval: 60 });
    await cp.waitReceived('ChangeConfiguration', (p) => p.key === 'AuthorizationCacheEnabled', 0, 15_000);

    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    expect(stderr).toContain('OCPP BootNotification accepted');
  });
});
