/**
 * PileDriver for one OCPP 1.6J charge point with N connectors, the gateway acting as its local
 * central system (the pile connects to the gateway's WebSocket endpoint, endpoint.ts).
 *
 * - `start(c)`: RemoteStartTransaction with an idTag minted for this start (plus a TxProfile
 *   where a power cap is configured); the pile's Authorize is accepted only for that idTag; the
 *   start resolves when the pile's StartTransaction for it arrives, answered with a fresh
 *   transaction id.
 * - `stop(c)`: RemoteStopTransaction; resolves on the pile's StopTransaction (whose meterStop
 *   is the final register). Refused → ChangeAvailability Inoperative, and unless the
 *   StopTransaction still comes in time the stop rejects and the connector reads as faulted.
 * - `read(c)`: the latest reading, refreshed with TriggerMessage(MeterValues) when older than
 *   `meterMaxAgeMs`. Plug/fault from StatusNotification (status.ts), register/power/signed data
 *   from MeterValues (meter-values.ts). `contactorOn` means a transaction is open or the pile
 *   reports a state in which it delivers energy on the vehicle's demand.
 * - Events: `reading` on every change, `fault` on a Faulted status (or a stop that cannot be
 *   confirmed), `unplugged` when a plugged status turns Available, `connection-lost` when the
 *   WebSocket closes, is replaced, or stays silent past the missed-heartbeat window.
 *
 * Failing closed: without a connection every read, start and stop rejects; a connector whose
 * status is not known on the current connection reads as faulted; Authorize and
 * StartTransaction for any idTag but the pending one are answered Invalid and such a
 * transaction is stopped. Every stop the gateway asks for is remembered (`wantOff`): a
 * connection that comes up after start-up has its open transactions on such connectors stopped
 * once the pile has reported its state (a pile keeps charging when the link drops and queues
 * its StopTransaction; OCPP 1.6 has no standard "stop when the central system is gone").
 * Connections during the start-up wait are left alone, because the gateway's start-up recovery
 * (which sees the ledger) decides about transactions found then. `close()` stops every open
 * transaction, then closes the endpoint.
 * @module
 */

import { performance } from 'node:perf_hooks';
import type { ConnectorReading, PileDriver, PileEvent } from '../../contracts.ts';
import { type ChargePointLink, callError, OcppEndpoint, type OcppLog } from './endpoint.ts';
import { OcppPileError } from './errors.ts';
import type {
  AuthorizeRequest,
  BootNotificationRequest,
  MeterValuesRequest,
  StartTransactionRequest,
  StatusNotificationRequest,
  StopTransactionRequest,
} from './messages.ts';
import { readMeterValues } from './meter-values.ts';
import {
  chargePointBlocksAll,
  energyMayFlow,
  faultDetail,
  isFault,
  isUnavailable,
  pluggedOf,
  type ReportedStatus,
} from './status.ts';
import {
  type ChargingLimit,
  mintIdTag,
  newChargingProfileId,
  newTransactionId,
  txProfile,
} from './transactions.ts';
import { Waiters } from './waiters.ts';

/** Receipts carry at most this much signed meter data (shared/src/messages/receipt.ts). */
export const MAX_SIGNED_METER_DATA_BYTES = 1024;

export interface OcppPileDriverOptions {
  /** The one charge point identity accepted (last URL segment). */
  readonly chargePointId: string;
  /** Connector ids served (OCPP connectorId, 1-based; 0 is the charge point itself). */
  readonly connectors: readonly number[];
  /** The gateway's trusted clock, Unix s: currentTime in BootNotification/Heartbeat answers. */
  readonly now: () => number;
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
  /** OCPP security profile 1 password (HTTP Basic auth); absent = none. */
  readonly password?: string | undefined;
  /** Heartbeat interval told to the pile (s). */
  readonly heartbeatSeconds?: number;
  /** Silence from the pile for this long = link lost (monotonic ms; default 3 heartbeats). */
  readonly livenessTimeoutMs?: number;
  /** MeterValueSampleInterval configured on the pile (s). */
  readonly meterSampleSeconds?: number;
  /** read() refreshes a register older than this (monotonic ms). */
  readonly meterMaxAgeMs?: number;
  /** Per call to the pile (monotonic ms). */
  readonly requestTimeoutMs?: number;
  /** RemoteStartTransaction → StartTransaction (monotonic ms). */
  readonly startTimeoutMs?: number;
  /** RemoteStopTransaction → StopTransaction (monotonic ms). */
  readonly stopTimeoutMs?: number;
  /** How long creation waits for the pile to connect and report (monotonic ms). */
  readonly startupWaitMs?: number;
  /** TxProfile cap sent with every remote start; absent = no profile. */
  readonly chargingLimit?: ChargingLimit | undefined;
  /** Set the pile's configuration keys after each BootNotification (default true). */
  readonly configureChargePoint?: boolean;
  readonly log?: OcppLog;
  /** Where exceptions thrown by event listeners go (default console.error). */
  readonly onListenerError?: (error: unknown) => void;
}

/** What the pile said about itself in its last BootNotification. */
export interface ChargePointInfo {
  readonly vendor: string;
  readonly model: string;
  readonly serialNumber: string | undefined;
  readonly firmwareVersion: string | undefined;
  readonly meterType: string | undefined;
  readonly meterSerialNumber: string | undefined;
}

export interface OcppPileDriver extends PileDriver {
  /** ws:// URL the charge point connects to (with the bound port). */
  readonly url: string;
  readonly connected: boolean;
  readonly chargePoint: ChargePointInfo | undefined;
}

const DEFAULTS = {
  host: '0.0.0.0',
  port: 9000,
  path: '/ocpp',
  heartbeatSeconds: 60,
  meterSampleSeconds: 10,
  requestTimeoutMs: 10_000,
  startTimeoutMs: 60_000,
  stopTimeoutMs: 30_000,
  startupWaitMs: 30_000,
} as const;

/** Configuration keys the gateway relies on (OCPP 1.6 core and local auth list profiles). */
function configurationKeys(meterSampleSeconds: number): readonly { key: string; value: string }[] {
  return [
    { key: 'MeterValueSampleInterval', value: String(meterSampleSeconds) },
    { key: 'MeterValuesSampledData', value: 'Energy.Active.Import.Register,Power.Active.Import' },
    { key: 'StopTxnSampledData', value: 'Energy.Active.Import.Register' },
    // Remote starts are authorized by the gateway through the minted idTag.
    { key: 'AuthorizeRemoteTxRequests', value: 'true' },
    // Nobody charges without paying through the gateway: no offline or cached authorization.
    { key: 'StopTransactionOnInvalidId', value: 'true' },
    { key: 'LocalAuthorizeOffline', value: 'false' },
    { key: 'LocalPreAuthorize', value: 'false' },
    { key: 'AllowOfflineTxForUnknownId', value: 'false' },
    { key: 'AuthorizationCacheEnabled', value: 'false' },
  ];
}

interface Transaction {
  readonly id: number;
  readonly idTag: string | undefined;
  /** Started by this driver for a gateway session (the pending idTag matched). */
  readonly ours: boolean;
}

interface PendingStart {
  readonly idTag: string;
  readonly resolve: () => void;
  readonly fail: (error: Error) => void;
}

interface ConnectorState {
  readonly connector: number;
  /** Last StatusNotification on the current connection; undefined = not known. */
  reported: ReportedStatus | undefined;
  meterWh: number | undefined;
  /** performance.now() of the last register update; -Infinity when never. */
  meterAtMs: number;
  powerW: number;
  signedMeterData: Uint8Array | undefined;
  tx: Transaction | undefined;
  pendingStart: PendingStart | undefined;
  stopping: Promise<void> | undefined;
  /** The gateway asked for this connector to be off (or never asked for it to be on). */
  wantOff: boolean;
  /** A stop was refused or not confirmed: faulted until a StopTransaction or idle status. */
  stopUnconfirmed: boolean;
}

const silentLog: OcppLog = { info() {}, warn() {} };
const isoTime = (unixSeconds: number) => new Date(unixSeconds * 1000).toISOString();

class OcppChargePointDriver implements OcppPileDriver {
  readonly connectors: readonly number[];
  readonly #o: OcppPileDriverOptions;
  readonly #log: OcppLog;
  readonly #states = new Map<number, ConnectorState>();
  readonly #listeners = new Set<(event: PileEvent) => void>();
  readonly #waiters = new Waiters();
  #endpoint: OcppEndpoint | undefined;
  #link: ChargePointLink | undefined;
  /** The current connection came up after start-up: it reconciles wanted-off connectors. */
  #linkEnforces = false;
  /** Settles once the current connection has reported its state (or tried to). */
  #sync: Promise<void> | undefined;
  #chargePoint: ChargePointInfo | undefined;
  /** Connector 0: the charge point as a whole. */
  #whole: ReportedStatus | undefined;
  #startupDone = false;
  #closed = false;

  constructor(options: OcppPileDriverOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLog;
    this.connectors = Object.freeze([...options.connectors]);
    for (const connector of this.connectors) {
      this.#states.set(connector, {
        connector,
        reported: undefined,
        meterWh: undefined,
        meterAtMs: Number.NEGATIVE_INFINITY,
        powerW: 0,
        signedMeterData: undefined,
        tx: undefined,
        pendingStart: undefined,
        stopping: undefined,
        wantOff: true,
        stopUnconfirmed: false,
      });
    }
  }

  get url(): string {
    return this.#endpoint?.url ?? '';
  }

  get connected(): boolean {
    return this.#link !== undefined;
  }

  get chargePoint(): ChargePointInfo | undefined {
    return this.#chargePoint;
  }

  get #requestTimeoutMs(): number {
    return this.#o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  }

  async listen(): Promise<void> {
    const o = this.#o;
    const heartbeatSeconds = o.heartbeatSeconds ?? DEFAULTS.heartbeatSeconds;
    const livenessTimeoutMs = o.livenessTimeoutMs ?? heartbeatSeconds * 3 * 1000;
    this.#endpoint = await OcppEndpoint.listen(
      {
        host: o.host ?? DEFAULTS.host,
        port: o.port ?? DEFAULTS.port,
        path: o.path ?? DEFAULTS.path,
        chargePointId: o.chargePointId,
        password: o.password,
        requestTimeoutMs: this.#requestTimeoutMs,
        livenessTimeoutMs,
        pingIntervalMs: Math.max(1000, Math.floor(livenessTimeoutMs / 2)),
        log: this.#log,
      },
      {
        onConnect: (link) => this.#onConnect(link),
        onCall: (link, method, params) => this.#onCall(link, method, params),
        onDisconnect: (link, reason) => this.#onDisconnect(link, reason),
      },
    );
  }

  /** Waits (bounded) for the pile to connect and report, then ends the start-up window. */
  async finishStartup(waitMs: number): Promise<void> {
    const deadline = performance.now() + waitMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#waiters.until(
        () => this.#link !== undefined,
        waitMs,
        () => new OcppPileError('timeout', 'no charge point connected during the start-up wait'),
      ).promise;
      const reported = this.#sync;
      const left = Math.max(0, deadline - performance.now());
      if (reported) await Promise.race([reported, new Promise((r) => (timer = setTimeout(r, left)))]);
    } catch {
      this.#log.warn(
        { chargePointId: this.#o.chargePointId, url: this.url, waitMs },
        'OCPP charge point not connected at start-up: its connectors read as faulted until it connects',
      );
    } finally {
      clearTimeout(timer);
      this.#startupDone = true;
    }
  }

  // ---- PileDriver ------------------------------------------------------------------------------

  async read(connector: number): Promise<ConnectorReading> {
    const s = this.#state(connector);
    const link = await this.#ready();
    const stale = performance.now() - s.meterAtMs > (this.#o.meterMaxAgeMs ?? this.#meterMaxAgeDefault());
    if (stale) {
      try {
        await this.#refreshMeter(link, s);
      } catch (err) {
        if (s.meterWh === undefined) {
          throw new OcppPileError(
            'no-meter-value',
            `connector ${connector}: the charge point has sent no meter register (${(err as Error).message})`,
            { cause: err },
          );
        }
        // The register only moves inside a transaction: without one, the last value still holds.
        if (s.tx !== undefined || (s.reported !== undefined && energyMayFlow(s.reported.status))) {
          throw new OcppPileError(
            'stale-meter',
            `connector ${connector}: meter register is stale while energy may flow (${(err as Error).message})`,
            { cause: err },
          );
        }
      }
    }
    const reading = this.#reading(s);
    if (!reading) throw new OcppPileError('no-meter-value', `connector ${connector}: no meter register`);
    return reading;
  }

  async start(connector: number, limits: { readonly maxEnergyWh?: number }): Promise<void> {
    const s = this.#state(connector);
    const { maxEnergyWh } = limits;
    if (maxEnergyWh !== undefined && (!Number.isSafeInteger(maxEnergyWh) || maxEnergyWh <= 0)) {
      throw new RangeError('maxEnergyWh must be a positive integer (Wh)');
    }
    const link = await this.#ready();
    if (s.tx !== undefined || s.pendingStart !== undefined || s.stopping !== undefined) {
      throw new OcppPileError(
        'busy',
        `connector ${connector}: a transaction is open or being started/stopped`,
      );
    }
    const blocked = this.#unavailableReason(s);
    if (blocked) throw new OcppPileError('faulted', `connector ${connector}: ${blocked}`);
    if (s.reported && energyMayFlow(s.reported.status)) {
      throw new OcppPileError(
        'busy',
        `connector ${connector}: the charge point reports ${s.reported.status}`,
      );
    }

    const idTag = mintIdTag();
    s.wantOff = false;
    const { pending, started } = this.#beginStart(s, idTag);
    const limit = this.#o.chargingLimit;
    try {
      const answer = await link.call('RemoteStartTransaction', {
        connectorId: connector,
        idTag,
        ...(limit ? { chargingProfile: txProfile(limit, newChargingProfileId()) } : {}),
      });
      if (answer.status !== 'Accepted') {
        pending.fail(
          new OcppPileError('rejected', `connector ${connector}: RemoteStartTransaction ${answer.status}`),
        );
      }
    } catch (err) {
      pending.fail(err as Error);
    }
    await started;
    const tx = s.tx as Transaction | undefined; // set by the StartTransaction that settled `started`
    this.#log.info({ connector, transactionId: tx?.id }, 'OCPP transaction started');
  }

  /** Registers the pending start: settled by the pile's StartTransaction, a refusal or the timeout. */
  #beginStart(s: ConnectorState, idTag: string): { pending: PendingStart; started: Promise<void> } {
    const startTimeoutMs = this.#o.startTimeoutMs ?? DEFAULTS.startTimeoutMs;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let resolveStarted: () => void = () => {};
    let rejectStarted: (error: Error) => void = () => {};
    const started = new Promise<void>((resolve, reject) => {
      resolveStarted = resolve;
      rejectStarted = reject;
    });
    // It may fail (link lost) while start() still awaits the RemoteStart answer: not unhandled.
    started.catch(() => {});
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      if (s.pendingStart === pending) s.pendingStart = undefined;
    };
    const pending: PendingStart = {
      idTag,
      resolve: () => {
        if (settled) return;
        settle();
        resolveStarted();
      },
      fail: (error) => {
        if (settled) return;
        settle();
        s.wantOff = true; // a StartTransaction arriving later is refused and stopped
        rejectStarted(error);
      },
    };
    timer = setTimeout(() => {
      pending.fail(
        new OcppPileError(
          'timeout',
          `connector ${s.connector}: no StartTransaction within ${startTimeoutMs} ms of RemoteStartTransaction`,
        ),
      );
    }, startTimeoutMs);
    s.pendingStart = pending;
    return { pending, started };
  }

  async stop(connector: number): Promise<void> {
    const s = this.#state(connector);
    s.wantOff = true;
    s.pendingStart?.fail(new OcppPileError('rejected', `connector ${connector}: start cancelled by a stop`));
    if (s.stopping) return s.stopping;
    const stopping = this.#stop(s).finally(() => {
      if (s.stopping === stopping) s.stopping = undefined;
    });
    s.stopping = stopping;
    return stopping;
  }

  onEvent(listener: (event: PileEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Stops every open transaction (bounded by the stop timeout), then closes the endpoint. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const link = this.#link;
    if (link) {
      await Promise.allSettled(
        [...this.#states.values()]
          .filter((s) => s.tx !== undefined)
          .map((s) => {
            s.wantOff = true;
            return this.#stopTransaction(link, s, s.tx!);
          }),
      );
    }
    this.#listeners.clear();
    for (const s of this.#states.values()) {
      s.pendingStart?.fail(new OcppPileError('closed', `connector ${s.connector}: the driver was closed`));
    }
    this.#waiters.rejectAll(() => new OcppPileError('closed', 'the OCPP driver was closed'));
    await this.#endpoint?.close();
  }

  // ---- state -----------------------------------------------------------------------------------

  #state(connector: number): ConnectorState {
    const s = this.#states.get(connector);
    if (!s) throw new OcppPileError('unknown-connector', `this driver has no connector ${connector}`);
    return s;
  }

  #meterMaxAgeDefault(): number {
    return (this.#o.meterSampleSeconds ?? DEFAULTS.meterSampleSeconds) * 1000;
  }

  /** The connected link once it has reported its state; rejects when there is none. */
  async #ready(): Promise<ChargePointLink> {
    if (this.#closed) throw new OcppPileError('closed', 'the OCPP driver was closed');
    const link = this.#link;
    if (!link)
      throw new OcppPileError('not-connected', `charge point ${this.#o.chargePointId} is not connected`);
    await this.#sync;
    if (this.#link !== link) throw new OcppPileError('link-lost', 'the charge point link dropped');
    return link;
  }

  /** Why a connector cannot take a session now, or undefined. */
  #unavailableReason(s: ConnectorState): string | undefined {
    if (!this.#link) return 'charge point not connected';
    if (chargePointBlocksAll(this.#whole)) return `charge point ${faultDetail(this.#whole!)}`;
    if (s.stopUnconfirmed) return 'a stop was not confirmed by the charge point';
    if (!s.reported) return 'status not reported by the charge point';
    if (isUnavailable(s.reported)) return faultDetail(s.reported);
    return undefined;
  }

  #meterId(connector: number): string {
    const serial = this.#chargePoint?.meterSerialNumber?.trim();
    const usable = serial !== undefined && /^[\x20-\x7e]{1,25}$/.test(serial);
    const base = usable ? serial : `OCPP:${this.#o.chargePointId}`;
    // One meter serial per charge point in OCPP 1.6: tell the connectors' registers apart.
    return this.connectors.length > 1 || !usable ? `${base}/${connector}` : base;
  }

  #reading(s: ConnectorState): ConnectorReading | undefined {
    if (s.meterWh === undefined) return undefined;
    const contactorOn = s.tx !== undefined || (s.reported !== undefined && energyMayFlow(s.reported.status));
    return {
      connector: s.connector,
      contactorOn,
      plugged: s.reported ? pluggedOf(s.reported.status) : undefined,
      faulted: this.#unavailableReason(s) !== undefined,
      meterWh: s.meterWh,
      meterId: this.#meterId(s.connector),
      powerW: contactorOn ? s.powerW : 0,
      ...(s.signedMeterData ? { signedMeterData: s.signedMeterData } : {}),
    };
  }

  #emit(event: PileEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        (this.#o.onListenerError ?? ((e) => console.error('pile event listener:', e)))(error);
      }
    }
  }

  #emitReading(s: ConnectorState): void {
    const reading = this.#reading(s);
    if (reading) this.#emit({ kind: 'reading', reading });
  }

  #transactionIds(): Set<number> {
    const ids = new Set<number>();
    for (const s of this.#states.values()) if (s.tx) ids.add(s.tx.id);
    return ids;
  }

  #findTransaction(transactionId: number): ConnectorState | undefined {
    for (const s of this.#states.values()) if (s.tx?.id === transactionId) return s;
    return undefined;
  }

  // ---- stop ------------------------------------------------------------------------------------

  async #stop(s: ConnectorState): Promise<void> {
    const link = await this.#ready();
    let tx = s.tx;
    if (!tx) {
      if (!s.reported) {
        throw new OcppPileError(
          'stop-unconfirmed',
          `connector ${s.connector}: the charge point has not reported its status, cannot confirm it is off`,
        );
      }
      if (!energyMayFlow(s.reported.status)) return; // off, as the pile itself reports
      // A transaction from before this process (the gateway restarted): learn its id first.
      tx = await this.#discoverTransaction(link, s);
      if (!tx) {
        s.stopUnconfirmed = true;
        const detail = `connector ${s.connector}: ${s.reported.status} without a known transaction id; cannot stop it`;
        this.#emit({ kind: 'fault', connector: s.connector, detail });
        this.#emitReading(s);
        await this.#makeInoperative(link, s.connector);
        throw new OcppPileError('stop-unconfirmed', detail);
      }
    }
    await this.#stopTransaction(link, s, tx);
  }

  /** RemoteStopTransaction, then wait for the StopTransaction; refused → Inoperative. */
  async #stopTransaction(link: ChargePointLink, s: ConnectorState, tx: Transaction): Promise<void> {
    const stopTimeoutMs = this.#o.stopTimeoutMs ?? DEFAULTS.stopTimeoutMs;
    const ended = this.#waiters.until(
      () => s.tx?.id !== tx.id,
      stopTimeoutMs,
      () =>
        new OcppPileError(
          'stop-unconfirmed',
          `connector ${s.connector}: no StopTransaction for transaction ${tx.id} within ${stopTimeoutMs} ms`,
        ),
    );
    try {
      const answer = await link.call('RemoteStopTransaction', { transactionId: tx.id });
      if (answer.status !== 'Accepted') {
        this.#log.warn(
          { connector: s.connector, transactionId: tx.id },
          'RemoteStopTransaction refused: setting the connector Inoperative',
        );
        await this.#makeInoperative(link, s.connector);
      }
    } catch (err) {
      // A lost link rejects `ended` too; a timed-out call may still be followed by the stop.
      this.#log.warn({ connector: s.connector, err: String(err) }, 'RemoteStopTransaction failed');
    }
    try {
      await ended.promise;
      this.#log.info({ connector: s.connector, transactionId: tx.id }, 'OCPP transaction stopped');
    } catch (err) {
      if (err instanceof OcppPileError && err.code === 'stop-unconfirmed') {
        s.stopUnconfirmed = true;
        this.#emit({ kind: 'fault', connector: s.connector, detail: err.message });
        this.#emitReading(s);
      }
      throw err;
    }
  }

  async #makeInoperative(link: ChargePointLink, connector: number): Promise<void> {
    try {
      const answer = await link.call('ChangeAvailability', { connectorId: connector, type: 'Inoperative' });
      this.#log.warn({ connector, status: answer.status }, 'ChangeAvailability Inoperative sent');
    } catch (err) {
      this.#log.warn({ connector, err: String(err) }, 'ChangeAvailability Inoperative failed');
    }
  }

  /** Asks the pile for a MeterValues of the connector, hoping for its transactionId. */
  async #discoverTransaction(link: ChargePointLink, s: ConnectorState): Promise<Transaction | undefined> {
    if (s.tx) return s.tx;
    try {
      await this.#refreshMeter(link, s, () => s.tx !== undefined);
    } catch (err) {
      this.#log.warn({ connector: s.connector, err: String(err) }, 'could not learn the open transaction id');
    }
    return s.tx;
  }

  /** TriggerMessage(MeterValues) and wait for the fresh MeterValues (or `also`). */
  async #refreshMeter(link: ChargePointLink, s: ConnectorState, also?: () => boolean): Promise<void> {
    const asked = performance.now();
    const fresh = this.#waiters.until(
      () => s.meterAtMs >= asked || (also?.() ?? false),
      this.#requestTimeoutMs,
      () =>
        new OcppPileError(
          'timeout',
          `connector ${s.connector}: no MeterValues within ${this.#requestTimeoutMs} ms of TriggerMessage`,
        ),
    );
    try {
      const answer = await link.call('TriggerMessage', {
        requestedMessage: 'MeterValues',
        connectorId: s.connector,
      });
      if (answer.status !== 'Accepted') {
        throw new OcppPileError(
          'rejected',
          `connector ${s.connector}: TriggerMessage(MeterValues) ${answer.status}`,
        );
      }
    } catch (err) {
      fresh.cancel();
      throw err;
    }
    await fresh.promise;
  }

  // ---- connection ------------------------------------------------------------------------------

  #onConnect(link: ChargePointLink): void {
    this.#link = link;
    this.#linkEnforces = this.#startupDone;
    this.#waiters.recheck();
    const sync = this.#synchronise(link)
      .catch((err: unknown) => this.#log.warn({ err: String(err) }, 'OCPP state sync failed'))
      .then(() => {
        if (this.#link === link && this.#linkEnforces) this.#enforceWantedOff(link);
      });
    this.#sync = sync;
  }

  /** Learns the pile's identity, every connector's status and open transactions on this link. */
  async #synchronise(link: ChargePointLink): Promise<void> {
    const timeoutMs = this.#requestTimeoutMs;
    const trigger = async (
      requestedMessage: 'BootNotification' | 'StatusNotification',
      connectorId?: number,
    ) => {
      try {
        const answer = await link.call('TriggerMessage', {
          requestedMessage,
          ...(connectorId === undefined ? {} : { connectorId }),
        });
        if (answer.status !== 'Accepted') {
          this.#log.warn(
            { requestedMessage, connectorId, status: answer.status },
            'TriggerMessage not accepted',
          );
        }
      } catch (err) {
        this.#log.warn({ requestedMessage, connectorId, err: String(err) }, 'TriggerMessage failed');
      }
    };
    // After a reboot the pile boots by itself; after a mere reconnect of a pile this process has
    // not seen boot, ask for it (the meter serial number is part of the meter id).
    if (!this.#chargePoint) {
      const booted = this.#waiters.until(
        () => this.#chargePoint !== undefined,
        timeoutMs,
        () => new OcppPileError('timeout', 'no BootNotification'),
      );
      await trigger('BootNotification');
      await booted.promise.catch(() =>
        this.#log.warn({}, 'charge point sent no BootNotification when asked'),
      );
    }
    for (const connector of this.connectors) await trigger('StatusNotification', connector);
    const reported = this.#waiters.until(
      () => [...this.#states.values()].every((s) => s.reported !== undefined),
      timeoutMs,
      () => new OcppPileError('timeout', 'no StatusNotification'),
    );
    await reported.promise.catch(() =>
      this.#log.warn({}, 'not every connector reported its status: those read as faulted'),
    );
    for (const s of this.#states.values()) {
      if (this.#link !== link) return;
      if (!s.tx && s.reported && energyMayFlow(s.reported.status)) {
        await this.#discoverTransaction(link, s);
      } else if (s.meterWh === undefined) {
        // Readings (and so the gateway's view of this connector) need a register.
        await this.#refreshMeter(link, s).catch((err: unknown) =>
          this.#log.warn({ connector: s.connector, err: String(err) }, 'no meter register from the pile yet'),
        );
      }
    }
  }

  /** Stops transactions on connectors the gateway wants off (after a reconnect). */
  #enforceWantedOff(link: ChargePointLink): void {
    for (const s of this.#states.values()) {
      if (!s.wantOff || s.stopping || s.pendingStart) continue;
      const on = s.tx !== undefined || (s.reported !== undefined && energyMayFlow(s.reported.status));
      if (!on) continue;
      this.#log.warn(
        { connector: s.connector, transactionId: s.tx?.id },
        'charge point reconnected with a transaction the gateway wants off: stopping it',
      );
      if (this.#link === link) {
        this.stop(s.connector).catch((err: unknown) =>
          this.#log.warn({ connector: s.connector, err: String(err) }, 'stopping after reconnect failed'),
        );
      }
    }
  }

  #onDisconnect(link: ChargePointLink, reason: string): void {
    if (this.#link !== link) return;
    this.#link = undefined;
    this.#sync = undefined;
    this.#whole = undefined;
    for (const s of this.#states.values()) {
      s.reported = undefined; // unknown until the pile reports again on a new connection
      s.pendingStart?.fail(new OcppPileError('link-lost', `connector ${s.connector}: ${reason}`));
    }
    this.#waiters.rejectAll(() => new OcppPileError('link-lost', `charge point link lost: ${reason}`));
    if (!this.#closed) this.#emit({ kind: 'connection-lost' });
  }

  // ---- calls from the charge point -------------------------------------------------------------

  async #onCall(link: ChargePointLink, method: string, params: unknown): Promise<object> {
    try {
      switch (method) {
        case 'BootNotification':
          return this.#onBoot(link, params as BootNotificationRequest);
        case 'Heartbeat':
          return { currentTime: isoTime(this.#o.now()) };
        case 'StatusNotification':
          return this.#onStatus(params as StatusNotificationRequest);
        case 'Authorize':
          return this.#onAuthorize(params as AuthorizeRequest);
        case 'StartTransaction':
          return this.#onStartTransaction(link, params as StartTransactionRequest);
        case 'StopTransaction':
          return this.#onStopTransaction(params as StopTransactionRequest);
        case 'MeterValues':
          return this.#onMeterValues(link, params as MeterValuesRequest);
        case 'DataTransfer':
          return { status: 'UnknownVendorId' };
        case 'DiagnosticsStatusNotification':
        case 'FirmwareStatusNotification':
          return {};
        default:
          throw callError('NotImplemented', `${method} is not handled by this central system`);
      }
    } finally {
      this.#waiters.recheck();
    }
  }

  #onBoot(link: ChargePointLink, req: BootNotificationRequest): object {
    this.#chargePoint = {
      vendor: req.chargePointVendor,
      model: req.chargePointModel,
      serialNumber: req.chargePointSerialNumber ?? req.chargeBoxSerialNumber,
      firmwareVersion: req.firmwareVersion,
      meterType: req.meterType,
      meterSerialNumber: req.meterSerialNumber,
    };
    this.#log.info({ ...this.#chargePoint }, 'OCPP BootNotification accepted');
    if (this.#o.configureChargePoint ?? true) {
      // After the answer: OCPP wants the BootNotification answered before the central system calls.
      setImmediate(() => void this.#configure(link));
    }
    return {
      status: 'Accepted',
      currentTime: isoTime(this.#o.now()),
      interval: this.#o.heartbeatSeconds ?? DEFAULTS.heartbeatSeconds,
    };
  }

  async #configure(link: ChargePointLink): Promise<void> {
    const sampleSeconds = this.#o.meterSampleSeconds ?? DEFAULTS.meterSampleSeconds;
    for (const { key, value } of configurationKeys(sampleSeconds)) {
      if (this.#link !== link) return;
      try {
        const answer = await link.call('ChangeConfiguration', { key, value });
        if (answer.status !== 'Accepted') {
          this.#log.warn(
            { key, value, status: answer.status },
            'charge point did not accept a configuration key',
          );
        }
      } catch (err) {
        this.#log.warn({ key, value, err: String(err) }, 'ChangeConfiguration failed');
      }
    }
  }

  #onStatus(req: StatusNotificationRequest): object {
    const reported: ReportedStatus = {
      status: req.status,
      errorCode: req.errorCode,
      info: req.info,
      vendorErrorCode: req.vendorErrorCode,
    };
    if (req.connectorId === 0) {
      const wasFault = this.#whole !== undefined && isFault(this.#whole);
      this.#whole = reported;
      for (const s of this.#states.values()) {
        if (isFault(reported) && !wasFault) {
          this.#emit({
            kind: 'fault',
            connector: s.connector,
            detail: `charge point ${faultDetail(reported)}`,
          });
        }
        this.#emitReading(s);
      }
      return {};
    }
    const s = this.#states.get(req.connectorId);
    if (!s) return {};
    const before = s.reported;
    s.reported = reported;
    if (req.errorCode !== 'NoError' || req.status === 'Faulted') {
      this.#log.warn(
        { connector: s.connector, detail: faultDetail(reported) },
        'charge point reports an error',
      );
    }
    if (isFault(reported) && !(before && isFault(before))) {
      this.#emit({ kind: 'fault', connector: s.connector, detail: faultDetail(reported) });
    }
    if (before && pluggedOf(before.status) === true && pluggedOf(reported.status) === false) {
      this.#emit({ kind: 'unplugged', connector: s.connector });
    }
    if (s.stopUnconfirmed && !s.tx && !energyMayFlow(reported.status) && !isFault(reported)) {
      s.stopUnconfirmed = false; // the pile shows the connector idle again
    }
    this.#emitReading(s);
    return {};
  }

  #onAuthorize(req: AuthorizeRequest): object {
    const ours = [...this.#states.values()].some(
      (s) => s.pendingStart?.idTag === req.idTag || (s.tx?.ours === true && s.tx.idTag === req.idTag),
    );
    if (!ours)
      this.#log.warn({ idTag: req.idTag }, 'Authorize for an idTag the gateway did not issue: Invalid');
    return { idTagInfo: { status: ours ? 'Accepted' : 'Invalid' } };
  }

  #onStartTransaction(link: ChargePointLink, req: StartTransactionRequest): object {
    const transactionId = newTransactionId(this.#transactionIds());
    const s = this.#states.get(req.connectorId);
    const pending = s?.pendingStart;
    const ours = pending !== undefined && pending.idTag === req.idTag;
    if (s) {
      s.tx = { id: transactionId, idTag: req.idTag, ours };
      if (Number.isSafeInteger(req.meterStart) && req.meterStart >= 0) {
        s.meterWh = req.meterStart;
        s.meterAtMs = performance.now();
      }
      s.signedMeterData = undefined; // a new transaction: the previous one's signature no longer applies
      s.stopUnconfirmed = false;
    }
    if (ours) {
      pending.resolve();
    } else {
      this.#log.warn(
        { connector: req.connectorId, idTag: req.idTag, transactionId },
        'StartTransaction for an idTag the gateway did not issue (or too late): Invalid, stopping it',
      );
      // After the answer, so the pile knows the transaction id it is asked to stop.
      setImmediate(() => void this.#stopForeign(link, req.connectorId, transactionId));
    }
    if (s) this.#emitReading(s);
    return { transactionId, idTagInfo: { status: ours ? 'Accepted' : 'Invalid' } };
  }

  async #stopForeign(link: ChargePointLink, connector: number, transactionId: number): Promise<void> {
    const s = this.#states.get(connector);
    try {
      if (s?.tx?.id === transactionId) await this.#stopTransaction(link, s, s.tx);
      else await link.call('RemoteStopTransaction', { transactionId });
    } catch (err) {
      this.#log.warn({ connector, transactionId, err: String(err) }, 'stopping a foreign transaction failed');
    }
  }

  #onStopTransaction(req: StopTransactionRequest): object {
    const s = this.#findTransaction(req.transactionId);
    if (!s) {
      this.#log.warn(
        { transactionId: req.transactionId },
        'StopTransaction for a transaction this gateway does not know',
      );
      return req.idTag === undefined ? {} : { idTagInfo: { status: 'Invalid' } };
    }
    const tx = s.tx!;
    s.tx = undefined;
    if (Number.isSafeInteger(req.meterStop) && req.meterStop >= 0) {
      s.meterWh = req.meterStop;
      s.meterAtMs = performance.now();
    } else {
      this.#log.warn(
        { connector: s.connector, meterStop: req.meterStop },
        'StopTransaction with an unusable meterStop',
      );
    }
    s.powerW = 0;
    const sample = readMeterValues(req.transactionData ?? []);
    if (sample.signedData !== undefined) this.#setSignedData(s, sample.signedData);
    s.stopUnconfirmed = false;
    if (s.reported && energyMayFlow(s.reported.status)) {
      // The pile follows with Finishing/Available; until then the transaction is over regardless.
      s.reported = { ...s.reported, status: 'Finishing' };
    }
    this.#log.info(
      { connector: s.connector, transactionId: tx.id, meterStop: req.meterStop, reason: req.reason },
      'OCPP StopTransaction',
    );
    this.#emitReading(s);
    return req.idTag === undefined ? {} : { idTagInfo: { status: tx.ours ? 'Accepted' : 'Invalid' } };
  }

  #onMeterValues(link: ChargePointLink, req: MeterValuesRequest): object {
    const s = this.#states.get(req.connectorId);
    if (!s) return {}; // connector 0 (main meter) or a connector this gateway does not serve
    const sample = readMeterValues(req.meterValue);
    if (sample.skipped.length > 0) {
      this.#log.warn({ connector: s.connector, skipped: sample.skipped }, 'unusable sampled values ignored');
    }
    if (sample.energyWh !== undefined) {
      s.meterWh = sample.energyWh;
      s.meterAtMs = performance.now();
    }
    if (sample.powerW !== undefined) s.powerW = sample.powerW;
    if (sample.signedData !== undefined) this.#setSignedData(s, sample.signedData);
    if (req.transactionId !== undefined && s.tx === undefined) {
      // A transaction this process did not start (it predates a gateway restart).
      s.tx = { id: req.transactionId, idTag: undefined, ours: false };
      this.#log.warn(
        { connector: s.connector, transactionId: req.transactionId },
        'open transaction discovered',
      );
      if (this.#linkEnforces && s.wantOff && !s.stopping) {
        setImmediate(() => this.#enforceWantedOff(link));
      }
    }
    this.#emitReading(s);
    return {};
  }

  #setSignedData(s: ConnectorState, signed: string): void {
    const bytes = new TextEncoder().encode(signed);
    if (bytes.length > MAX_SIGNED_METER_DATA_BYTES) {
      this.#log.warn(
        { connector: s.connector, bytes: bytes.length },
        `signed meter data over ${MAX_SIGNED_METER_DATA_BYTES} bytes does not fit a receipt: dropped`,
      );
      s.signedMeterData = undefined;
      return;
    }
    s.signedMeterData = bytes;
  }
}

/**
 * Starts the OCPP endpoint, waits up to `startupWaitMs` for the charge point to connect and
 * report its state (so the gateway's start-up recovery sees it), and returns the driver.
 */
export async function createOcppPileDriver(options: OcppPileDriverOptions): Promise<OcppPileDriver> {
  if (options.connectors.length === 0) throw new RangeError('createOcppPileDriver: at least one connector');
  const bad = options.connectors.filter((c) => !Number.isSafeInteger(c) || c < 1);
  if (bad.length > 0) {
    throw new RangeError(
      `OCPP connector ids start at 1 (0 is the charge point itself): got ${bad.join(', ')}`,
    );
  }
  const driver = new OcppChargePointDriver(options);
  await driver.listen();
  await driver.finishStartup(options.startupWaitMs ?? DEFAULTS.startupWaitMs);
  return driver;
}
