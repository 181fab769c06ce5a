/**
 * Charging sessions: from an authorized token to a signed receipt.
 *
 * start: connector checks → ledger (voucher spent + session opened, one durable commit) →
 * pile start command. Metering: every pile reading updates the ledger's last reading and the
 * phone's status, and the session stops before the fee would pass the hold. Stops: the
 * driver's signed stop request, hold reached, unplug, fault, lost pile link, idle timeout
 * (authorized but no energy flowing). Finish: pile off → final reading → receipt signed with
 * the presentation proof → stored in the ledger (chain + outbox) → sent to the phone.
 *
 * Start-up recovery makes a crash at any point safe: a connector that is on without an open
 * session is switched off; an open session whose pile is still on is resumed; one whose pile
 * is off is closed with a receipt from the last meter reading.
 * @module
 */

import {
  type Authorization,
  ConnectorState,
  type ConnectorStatus,
  type CryptoProvider,
  chargedAmount,
  computeFee,
  ErrorCode,
  maxEnergyWithinHold,
  ProtocolError,
  type Receipt,
  SessionState,
  type SigningKey,
  type Status,
  StopReason,
  signReceipt,
  toHex,
} from '../../../shared/src/index.ts';
import type { ConnectorReading, PileDriver, PileEvent, TrustedClock } from '../contracts.ts';
import {
  type Ledger,
  type LedgerSessionRecord as SessionRecord,
  StaleReceiptLinkError,
} from '../ledger/ledger.ts';
import type { SessionUpdate, SessionView } from '../link/links.ts';
import { CrashPoint, crashPoint } from './crash.ts';
import { Mutex } from './mutex.ts';

export interface ChargingOptions {
  readonly crypto: CryptoProvider;
  readonly ledger: Ledger;
  readonly pile: PileDriver;
  readonly clock: TrustedClock;
  readonly gatewayKey: SigningKey;
  readonly gatewayKid: Uint8Array;
  readonly gatewayId: string;
  /** Stop when no energy has flowed this long after authorization (s). */
  readonly idleTimeoutSeconds?: number;
  /** Energy one reading interval may add; the session stops this far before the hold (Wh). */
  readonly holdMarginWh?: number;
  readonly log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

interface ActiveSession {
  record: SessionRecord;
  /** The energy cap sent to the pile (Wh): the most the hold can pay for. */
  maxEnergyWh: number;
  lastMeterWh: number;
  lastEnergyAt: number;
  state: SessionState;
  stopping: boolean;
  signedMeterData: Uint8Array | undefined;
  /** Kept open at start-up because the pile could not be read. */
  recovering?: boolean;
}

export class ChargingSessions {
  readonly #o: ChargingOptions;
  readonly #appends = new Mutex();
  readonly #active = new Map<string, ActiveSession>();
  readonly #listeners = new Map<string, Set<(update: SessionUpdate) => void>>();
  readonly #readings = new Map<number, ConnectorReading>();
  readonly #idleTimeoutSeconds: number;
  readonly #holdMarginWh: number;
  readonly #log: NonNullable<ChargingOptions['log']>;
  #unsubscribePile: (() => void) | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;

  constructor(options: ChargingOptions) {
    this.#o = options;
    this.#idleTimeoutSeconds = options.idleTimeoutSeconds ?? 180;
    this.#holdMarginWh = options.holdMarginWh ?? 10;
    this.#log = options.log ?? { info() {}, warn() {} };
  }

  /** Start-up: reconcile ledger and piles, then follow pile events. */
  async start(): Promise<void> {
    this.#unsubscribePile = this.#o.pile.onEvent((event) => {
      this.#onPileEvent(event).catch((err: unknown) =>
        this.#log.warn({ err: String(err) }, 'pile event handling failed'),
      );
    });
    await this.#recover();
    this.#ticker = setInterval(() => this.#tick(), 1_000);
    this.#ticker.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#ticker);
    this.#unsubscribePile?.();
    await this.#appends.run(() => undefined);
  }

  /** Connector states for the hello. */
  connectorStates(): ConnectorStatus[] {
    return this.#o.pile.connectors.map((id) => {
      const busy = [...this.#active.values()].some((s) => s.record.connector === id);
      const r = this.#readings.get(id);
      const state = busy
        ? ConnectorState.CHARGING
        : r?.faulted
          ? ConnectorState.FAULTED
          : r?.plugged
            ? ConnectorState.PREPARING
            : ConnectorState.AVAILABLE;
      return { id, state };
    });
  }

  get activeCount(): number {
    return this.#active.size;
  }

  async startCharging(auth: Authorization): Promise<SessionView> {
    const { pile, ledger, clock, crypto } = this.#o;
    const connector = auth.connector;
    if (!pile.connectors.includes(connector))
      throw new ProtocolError(ErrorCode.WRONG_CONNECTOR, 'no such connector');
    if (this.#sessionOnConnector(connector)) throw new ProtocolError(ErrorCode.CONNECTOR_BUSY);
    let reading: ConnectorReading;
    try {
      reading = await pile.read(connector);
    } catch {
      throw new ProtocolError(ErrorCode.CONNECTOR_FAULTED, 'pile not answering');
    }
    this.#readings.set(connector, reading);
    if (reading.faulted) throw new ProtocolError(ErrorCode.CONNECTOR_FAULTED);
    if (reading.contactorOn) throw new ProtocolError(ErrorCode.CONNECTOR_BUSY);
    if (reading.plugged === false) throw new ProtocolError(ErrorCode.VEHICLE_NOT_PLUGGED);
    const c = auth.voucher.claims;
    const record = await this.#appends.run(() => {
      // Re-checked inside the critical section: two phones may race for one connector.
      if (this.#sessionOnConnector(connector)) throw new ProtocolError(ErrorCode.CONNECTOR_BUSY);
      const opened = ledger.openSession({
        sessionId: crypto.randomBytes(16),
        cti: c.cti,
        connector,
        voucherBytes: auth.voucher.bytes,
        deviceKey: c.deviceKey,
        holdAmount: c.hold.amount,
        currency: c.hold.currency,
        tariff: c.tariff,
        deviceSignature: auth.proof.deviceSignature,
        transcriptDigest: auth.channel.transcriptDigest,
        proofVersion: auth.proof.version,
        helloBytes: auth.proof.helloBytes,
        phoneEphemeralKey: auth.proof.phoneEphemeralKey,
        meterId: reading.meterId,
        meterStartWh: reading.meterWh,
        startedAt: clock.now(),
      });
      this.#active.set(toHex(opened.sessionId), {
        record: opened,
        maxEnergyWh: Math.max(1, maxEnergyWithinHold(c.tariff, c.hold.amount, 0)),
        lastMeterWh: opened.meterStartWh,
        lastEnergyAt: opened.startedAt,
        state: SessionState.AUTHORIZED,
        stopping: false,
        signedMeterData: undefined,
      });
      return opened;
    });
    crashPoint(CrashPoint.AFTER_SPEND_COMMIT);
    const session = this.#active.get(toHex(record.sessionId))!;
    try {
      await pile.start(connector, { maxEnergyWh: session.maxEnergyWh });
    } catch (err) {
      this.#log.warn(
        { connector, err: String(err) },
        'pile did not start; closing the session with a zero receipt',
      );
      await this.#finish(session, record.meterStartWh, StopReason.FAULT);
      throw new ProtocolError(ErrorCode.PILE_START_FAILED);
    }
    crashPoint(CrashPoint.AFTER_START_COMMAND);
    session.state = SessionState.CHARGING;
    this.#log.info({ connector, session: toHex(record.sessionId) }, 'charging');
    return this.#view(session);
  }

  findSessionByCti(cti: Uint8Array): SessionView | undefined {
    for (const s of this.#active.values()) if (toHex(s.record.cti) === toHex(cti)) return this.#view(s);
    const record = this.#o.ledger.sessionByCti(cti);
    if (!record) return undefined;
    return {
      sessionId: record.sessionId,
      cti: record.cti,
      deviceKey: record.deviceKey,
      status: this.#status(
        record,
        record.lastMeterWh,
        record.state === 'open' ? SessionState.CHARGING : SessionState.FINISHED,
      ),
      receipt: record.receipt,
    };
  }

  subscribe(sessionId: Uint8Array, listener: (update: SessionUpdate) => void): () => void {
    const key = toHex(sessionId);
    let set = this.#listeners.get(key);
    if (!set) {
      set = new Set();
      this.#listeners.set(key, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  async stopCharging(sessionId: Uint8Array, reason: StopReason = StopReason.DRIVER_REQUEST): Promise<void> {
    const session = this.#active.get(toHex(sessionId));
    if (!session || session.stopping) return;
    session.stopping = true;
    session.state = SessionState.STOPPING;
    this.#publishStatus(session);
    const connector = session.record.connector;
    try {
      await this.#o.pile.stop(connector);
    } catch (err) {
      this.#log.warn({ connector, err: String(err) }, 'stop command failed; closing on the last reading');
    }
    let meterWh = session.lastMeterWh;
    try {
      const reading = await this.#o.pile.read(connector);
      if (reading.meterId === session.record.meterId) meterWh = Math.max(meterWh, reading.meterWh);
      session.signedMeterData = reading.signedMeterData ?? session.signedMeterData;
    } catch {}
    await this.#finish(session, meterWh, reason);
  }

  #sessionOnConnector(connector: number): ActiveSession | undefined {
    for (const s of this.#active.values()) if (s.record.connector === connector) return s;
    return undefined;
  }

  #status(record: SessionRecord, meterWh: number, state: SessionState): Status {
    const energyWh = Math.max(0, meterWh - record.meterStartWh);
    const elapsedSeconds = Math.max(0, this.#o.clock.now() - record.startedAt);
    return {
      sessionId: record.sessionId,
      state,
      connector: record.connector,
      energyWh,
      amount: chargedAmount(record.tariff, energyWh, elapsedSeconds, record.holdAmount),
      hold: record.holdAmount,
      elapsedSeconds,
    };
  }

  #view(session: ActiveSession): SessionView {
    return {
      sessionId: session.record.sessionId,
      cti: session.record.cti,
      deviceKey: session.record.deviceKey,
      status: this.#status(session.record, session.lastMeterWh, session.state),
    };
  }

  #publish(sessionId: Uint8Array, update: SessionUpdate): void {
    for (const listener of [...(this.#listeners.get(toHex(sessionId)) ?? [])]) listener(update);
  }

  #publishStatus(session: ActiveSession): void {
    this.#publish(session.record.sessionId, { kind: 'status', status: this.#view(session).status });
  }

  async #onPileEvent(event: PileEvent): Promise<void> {
    if (event.kind === 'connection-lost') {
      this.#log.warn({}, 'pile link lost: stopping every session (fail closed)');
      await Promise.all(
        [...this.#active.values()].map((s) => this.stopCharging(s.record.sessionId, StopReason.FAULT)),
      );
      return;
    }
    const session = this.#sessionOnConnector(
      event.kind === 'reading' ? event.reading.connector : event.connector,
    );
    if (event.kind === 'reading') this.#readings.set(event.reading.connector, event.reading);
    if (!session || session.stopping) return;
    if (event.kind === 'unplugged') return this.stopCharging(session.record.sessionId, StopReason.UNPLUGGED);
    if (event.kind === 'fault') return this.stopCharging(session.record.sessionId, StopReason.FAULT);
    const reading = event.reading;
    if (reading.meterId !== session.record.meterId) return;
    if (reading.meterWh > session.lastMeterWh) {
      session.lastMeterWh = reading.meterWh;
      session.lastEnergyAt = this.#o.clock.now();
      this.#o.ledger.updateMeter(session.record.sessionId, reading.meterWh, session.lastEnergyAt);
    }
    session.signedMeterData = reading.signedMeterData ?? session.signedMeterData;
    if (reading.faulted) return this.stopCharging(session.record.sessionId, StopReason.FAULT);
    if (session.recovering && reading.contactorOn) session.recovering = false; // the pile is back: carry on
    if (!reading.contactorOn && session.state === SessionState.CHARGING) {
      // The pile opened its contactor by itself: its energy cap (our hold) or the vehicle is full.
      const capped = session.lastMeterWh - session.record.meterStartWh >= session.maxEnergyWh;
      const reason = session.recovering
        ? StopReason.GATEWAY_RESTART
        : capped
          ? StopReason.HOLD_REACHED
          : StopReason.VEHICLE_FULL;
      return this.stopCharging(session.record.sessionId, reason);
    }
    if (this.#holdReached(session))
      return this.stopCharging(session.record.sessionId, StopReason.HOLD_REACHED);
    this.#publishStatus(session);
  }

  #holdReached(session: ActiveSession): boolean {
    const r = session.record;
    const elapsed = Math.max(0, this.#o.clock.now() - r.startedAt);
    const energy = session.lastMeterWh - r.meterStartWh;
    // Stop one reading's worth of energy early, so the fee never has to be cut at the hold.
    return computeFee(r.tariff, energy + this.#holdMarginWh, elapsed) > r.holdAmount;
  }

  #tick(): void {
    const now = this.#o.clock.now();
    for (const session of this.#active.values()) {
      if (session.stopping) continue;
      if (this.#holdReached(session)) {
        void this.stopCharging(session.record.sessionId, StopReason.HOLD_REACHED);
      } else if (now - session.lastEnergyAt >= this.#idleTimeoutSeconds) {
        void this.stopCharging(session.record.sessionId, StopReason.IDLE_TIMEOUT);
      }
    }
  }

  /** Signs and stores the receipt, then tells the phone. */
  async #finish(session: ActiveSession, meterStopWh: number, reason: StopReason): Promise<void> {
    const r = session.record;
    const receipt = await this.#appends.run(() => this.#signAndStore(session, meterStopWh, reason));
    this.#active.delete(toHex(r.sessionId));
    session.state = SessionState.FINISHED;
    session.lastMeterWh = receipt.body.meterStopWh;
    this.#log.info(
      {
        session: toHex(r.sessionId),
        energyWh: receipt.body.energyWh,
        charged: receipt.body.chargedAmount,
        reason,
      },
      'session finished, receipt stored',
    );
    const finished = this.#status(r, receipt.body.meterStopWh, SessionState.FINISHED);
    this.#publish(r.sessionId, { kind: 'status', status: finished });
    this.#publish(r.sessionId, { kind: 'receipt', receipt: receipt.bytes });
  }

  /**
   * nextReceiptLink → sign → closeSession. A ledger write elsewhere (e.g. a bundle installed
   * while the signature is computed) makes the link stale: then sign again on the new link.
   */
  async #signAndStore(session: ActiveSession, meterStopWh: number, reason: StopReason): Promise<Receipt> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#signAndStoreOnce(session, meterStopWh, reason);
      } catch (err) {
        if (!(err instanceof StaleReceiptLinkError) || attempt >= 5) throw err;
      }
    }
  }

  async #signAndStoreOnce(session: ActiveSession, meterStopWh: number, reason: StopReason): Promise<Receipt> {
    const { ledger, clock, gatewayKey, gatewayKid, gatewayId } = this.#o;
    const r = session.record;
    const energyWh = Math.max(0, meterStopWh - r.meterStartWh);
    const stoppedAt = Math.max(clock.now(), r.startedAt);
    const duration = stoppedAt - r.startedAt;
    const link = ledger.nextReceiptLink();
    const signed = await signReceipt(gatewayKey, gatewayKid, {
      cti: r.cti,
      sessionId: r.sessionId,
      gatewayId,
      connector: r.connector,
      meterId: r.meterId,
      meterStartWh: r.meterStartWh,
      meterStopWh: r.meterStartWh + energyWh,
      startedAt: r.startedAt,
      stoppedAt,
      energyWh,
      tariff: r.tariff,
      computedAmount: computeFee(r.tariff, energyWh, duration),
      chargedAmount: chargedAmount(r.tariff, energyWh, duration, r.holdAmount),
      currency: r.currency,
      proof: {
        deviceSignature: r.deviceSignature,
        version: r.proofVersion,
        helloBytes: r.helloBytes,
        phoneEphemeralKey: r.phoneEphemeralKey,
      },
      sequence: link.sequence,
      previousReceiptHash: link.previousReceiptHash,
      stopReason: reason,
      signedMeterData: session.signedMeterData,
    });
    crashPoint(CrashPoint.MID_RECEIPT);
    ledger.closeSession(r.sessionId, signed.bytes, link);
    crashPoint(CrashPoint.AFTER_RECEIPT_COMMIT);
    return signed;
  }

  async #recover(): Promise<void> {
    const { pile, ledger } = this.#o;
    const open = ledger.openSessions();
    for (const connector of pile.connectors) {
      let reading: ConnectorReading | undefined;
      try {
        reading = await pile.read(connector);
        this.#readings.set(connector, reading);
      } catch (err) {
        this.#log.warn({ connector, err: String(err) }, 'pile not readable at start-up');
      }
      const record = open.find((s) => s.connector === connector);
      if (!record) {
        if (reading?.contactorOn) {
          this.#log.warn({ connector }, 'connector on without an open session: switching it off');
          await pile.stop(connector);
        }
        continue;
      }
      const session: ActiveSession = {
        record,
        maxEnergyWh: Math.max(1, maxEnergyWithinHold(record.tariff, record.holdAmount, 0)),
        lastMeterWh: Math.max(record.lastMeterWh, reading?.meterId === record.meterId ? reading.meterWh : 0),
        lastEnergyAt: this.#o.clock.now(),
        state: SessionState.CHARGING,
        stopping: false,
        signedMeterData: reading?.signedMeterData,
      };
      this.#active.set(toHex(record.sessionId), session);
      if (!reading) {
        // The pile cannot be seen: command it off (fail closed) and keep the session open; the
        // first reading that shows the contactor off closes it with the metered energy.
        session.recovering = true;
        this.#log.warn(
          { connector, session: toHex(record.sessionId) },
          'pile unreadable: stop sent, session kept open',
        );
        await pile.stop(connector).catch(() => {});
        continue;
      }
      if (reading.contactorOn) {
        this.#log.info(
          { connector, session: toHex(record.sessionId) },
          'resuming the open session (pile still on)',
        );
        ledger.updateMeter(record.sessionId, session.lastMeterWh, this.#o.clock.now());
      } else {
        this.#log.info(
          { connector, session: toHex(record.sessionId) },
          'closing the open session (pile off) with its last reading',
        );
        session.stopping = true;
        await this.#finish(session, session.lastMeterWh, StopReason.GATEWAY_RESTART);
      }
    }
    // Sessions on connectors the pile no longer has: close them on their last reading.
    for (const record of open) {
      if (pile.connectors.includes(record.connector)) continue;
      const session: ActiveSession = {
        record,
        maxEnergyWh: 0,
        lastMeterWh: record.lastMeterWh,
        lastEnergyAt: 0,
        state: SessionState.STOPPING,
        stopping: true,
        signedMeterData: undefined,
      };
      this.#active.set(toHex(record.sessionId), session);
      await this.#finish(session, record.lastMeterWh, StopReason.GATEWAY_RESTART);
    }
  }
}
