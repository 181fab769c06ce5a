/**
 * A scripted OCPP 1.6J charge point for the OCPP driver tests, on `ocpp-rpc`'s RPCClient in
 * strict mode: every message it sends and every answer it gets is validated against the
 * official OCPP 1.6 JSON schemas that ship with ocpp-rpc, so the gateway's side is checked by
 * code that is not ours. The script plays a typical pile: it answers RemoteStart with
 * Authorize → StartTransaction → StatusNotification Charging, RemoteStop with StopTransaction →
 * Finishing, TriggerMessage with the requested message, and queues transaction messages while
 * offline and sends them first on the next connection. Knobs make it refuse or stay silent.
 */

import { EventEmitter, once } from 'node:events';
import { RPCClient } from 'ocpp-rpc';

type Status =
  | 'Available'
  | 'Preparing'
  | 'Charging'
  | 'SuspendedEVSE'
  | 'SuspendedEV'
  | 'Finishing'
  | 'Reserved'
  | 'Unavailable'
  | 'Faulted';

interface Connector {
  status: Status;
  errorCode: string;
  meterWh: number;
  transactionId: number | undefined;
  idTag: string | undefined;
}

export interface ScriptedChargePointOptions {
  /** The driver's URL, ending in /<identity>. */
  readonly url: string;
  readonly connectors?: readonly number[];
  /** Overrides the identity at the end of `url`. */
  readonly identity?: string;
  readonly password?: string;
  /** Subprotocols offered (default ['ocpp1.6']). */
  readonly protocols?: readonly string[];
  readonly meterSerialNumber?: string;
  /** Unit the register is reported in. */
  readonly energyUnit?: 'Wh' | 'kWh';
}

export interface Behaviour {
  remoteStart: 'accept' | 'reject' | 'accept-but-never-start';
  remoteStop: 'accept' | 'reject' | 'accept-but-never-stop';
  /** Messages TriggerMessage is honoured for; anything else is answered NotImplemented. */
  triggers: Set<string>;
  /** Signed meter data attached to MeterValues and StopTransaction (format SignedData). */
  signedData: ((connector: number, meterWh: number) => string) | undefined;
}

export interface ReceivedCall {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

export interface SentCall extends ReceivedCall {
  readonly result: Record<string, unknown>;
}

/** 1 000 000 + connector × 10 000 Wh, like the sim pile. */
export const initialRegister = (connector: number) => 1_000_000 + connector * 10_000;

export function formatRegister(wh: number, unit: 'Wh' | 'kWh'): string {
  return unit === 'Wh' ? String(wh) : `${Math.floor(wh / 1000)}.${String(wh % 1000).padStart(3, '0')}`;
}

export class ScriptedChargePoint extends EventEmitter {
  readonly connectors = new Map<number, Connector>();
  /** Calls from the central system, in order. */
  readonly received: ReceivedCall[] = [];
  /** Our completed calls with the central system's answers, in order. */
  readonly sent: SentCall[] = [];
  /** Failures of scripted reactions (a test asserts this stays empty). */
  readonly errors: unknown[] = [];
  /** Reactions cut off because the link dropped under them (normal when a test drops it). */
  interrupted = 0;
  readonly behaviour: Behaviour = {
    remoteStart: 'accept',
    remoteStop: 'accept',
    triggers: new Set(['BootNotification', 'Heartbeat', 'StatusNotification', 'MeterValues']),
    signedData: undefined,
  };
  readonly #options: ScriptedChargePointOptions;
  readonly #endpoint: string;
  readonly #identity: string;
  /** Transaction-related messages sent while offline, delivered first on the next connection. */
  readonly #offlineQueue: { method: string; params: Record<string, unknown> }[] = [];
  #client: RPCClient | undefined;

  constructor(options: ScriptedChargePointOptions) {
    super();
    this.setMaxListeners(100);
    this.#options = options;
    const cut = options.url.lastIndexOf('/');
    this.#endpoint = options.url.slice(0, cut);
    this.#identity = options.identity ?? decodeURIComponent(options.url.slice(cut + 1));
    for (const c of options.connectors ?? [1]) {
      this.connectors.set(c, {
        status: 'Available',
        errorCode: 'NoError',
        meterWh: initialRegister(c),
        transactionId: undefined,
        idTag: undefined,
      });
    }
  }

  get client(): RPCClient {
    if (!this.#client) throw new Error('charge point not connected');
    return this.#client;
  }

  get online(): boolean {
    return this.#client !== undefined;
  }

  connector(c: number): Connector {
    const state = this.connectors.get(c);
    if (!state) throw new Error(`no connector ${c}`);
    return state;
  }

  /** Opens the WebSocket (no automatic reconnect), then sends what was queued offline. */
  async connect(options: { readonly boot?: boolean } = {}): Promise<void> {
    const client = new RPCClient({
      endpoint: this.#endpoint,
      identity: this.#identity,
      protocols: [...(this.#options.protocols ?? ['ocpp1.6'])],
      strictMode: true,
      reconnect: false,
      callTimeoutMs: 5_000,
      ...(this.#options.password === undefined ? {} : { password: this.#options.password }),
    } as ConstructorParameters<typeof RPCClient>[0]);
    this.#handle(client);
    await client.connect();
    this.#client = client;
    client.on('close', () => {
      if (this.#client === client) this.#client = undefined;
      this.emit('closed');
    });
    while (this.#offlineQueue.length > 0) {
      const next = this.#offlineQueue.shift()!;
      await this.call(next.method, next.params);
    }
    if (options.boot ?? true) await this.boot();
  }

  /** Closes the WebSocket cleanly (the gateway sees it drop). */
  async disconnect(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    this.#client = undefined;
    await client.close({ code: 1000, reason: 'test disconnect' });
  }

  /** Sends a CALL; transaction messages are queued while offline (as a pile does). */
  async call(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    const client = this.#client;
    if (!client) {
      if (['StartTransaction', 'StopTransaction', 'MeterValues'].includes(method)) {
        this.#offlineQueue.push({ method, params });
        return {};
      }
      throw new Error(`charge point offline: cannot send ${method}`);
    }
    const result = (await client.call(method, params)) as Record<string, unknown>;
    this.sent.push({ method, params, result });
    this.emit('change');
    return result;
  }

  boot(): Promise<Record<string, unknown>> {
    return this.call('BootNotification', {
      chargePointVendor: 'ScriptedVendor',
      chargePointModel: 'Model-1',
      chargePointSerialNumber: 'CP-SERIAL-1',
      firmwareVersion: '1.0.0',
      ...(this.#options.meterSerialNumber ? { meterSerialNumber: this.#options.meterSerialNumber } : {}),
    });
  }

  heartbeat(): Promise<Record<string, unknown>> {
    return this.call('Heartbeat', {});
  }

  /** Sets the connector's status and reports it. */
  async status(
    c: number,
    status: Status,
    errorCode = 'NoError',
    extra: { info?: string; vendorErrorCode?: string } = {},
  ): Promise<void> {
    const state = this.connector(c);
    state.status = status;
    state.errorCode = errorCode;
    await this.#sendStatus(c, extra);
  }

  /** Energy flows into the vehicle (only the register; send it with `meterValues`). */
  deliver(c: number, wh: number): void {
    this.connector(c).meterWh += wh;
  }

  /** A MeterValues.req with the register (in the configured unit), power and signed data. */
  async meterValues(
    c: number,
    extra: { readonly powerW?: number; readonly sampledValue?: readonly Record<string, unknown>[] } = {},
  ): Promise<void> {
    const state = this.connector(c);
    const unit = this.#options.energyUnit ?? 'Wh';
    const sampledValue: Record<string, unknown>[] = extra.sampledValue
      ? [...extra.sampledValue]
      : [
          {
            value: formatRegister(state.meterWh, unit),
            measurand: 'Energy.Active.Import.Register',
            unit,
            context: 'Sample.Periodic',
          },
          ...(extra.powerW === undefined
            ? []
            : [{ value: String(extra.powerW), measurand: 'Power.Active.Import', unit: 'W' }]),
        ];
    const signed = this.behaviour.signedData?.(c, state.meterWh);
    if (signed !== undefined && !extra.sampledValue) {
      sampledValue.push({ value: signed, format: 'SignedData', measurand: 'Energy.Active.Import.Register' });
    }
    await this.call('MeterValues', {
      connectorId: c,
      ...(state.transactionId === undefined ? {} : { transactionId: state.transactionId }),
      meterValue: [{ timestamp: new Date().toISOString(), sampledValue }],
    });
  }

  /** The pile ends the transaction by itself (EV unplugged, local stop, …). */
  async stopTransaction(c: number, reason = 'Local'): Promise<void> {
    const state = this.connector(c);
    const transactionId = state.transactionId;
    if (transactionId === undefined) throw new Error(`no transaction on connector ${c}`);
    state.transactionId = undefined;
    state.idTag = undefined;
    const signed = this.behaviour.signedData?.(c, state.meterWh);
    const timestamp = new Date().toISOString();
    await this.call('StopTransaction', {
      transactionId,
      meterStop: state.meterWh,
      timestamp,
      reason,
      ...(signed === undefined
        ? {}
        : {
            transactionData: [
              {
                timestamp,
                sampledValue: [
                  { value: signed, format: 'SignedData', context: 'Transaction.End' },
                  { value: String(state.meterWh), context: 'Transaction.End', unit: 'Wh' },
                ],
              },
            ],
          }),
    });
    state.status = 'Finishing';
    if (this.online) await this.#sendStatus(c);
  }

  /**
   * The first call from the central system named `method` (and matching) among those received
   * since `mark` (default: ever), waiting for it if it has not come yet.
   */
  waitReceived(
    method: string,
    match: (params: Record<string, unknown>) => boolean = () => true,
    mark = 0,
    timeoutMs = 5_000,
  ): Promise<ReceivedCall> {
    return this.#waitIn(this.received, method, match, mark, timeoutMs);
  }

  /** The first completed call of ours named `method` (with its answer) since `mark`. */
  waitSent(
    method: string,
    match: (params: Record<string, unknown>) => boolean = () => true,
    mark = 0,
    timeoutMs = 5_000,
  ): Promise<SentCall> {
    return this.#waitIn(this.sent, method, match, mark, timeoutMs);
  }

  async #waitIn<T extends ReceivedCall>(
    list: readonly T[],
    method: string,
    match: (params: Record<string, unknown>) => boolean,
    mark: number,
    timeoutMs: number,
  ): Promise<T> {
    const ac = new AbortController();
    const timer = setTimeout(
      () => ac.abort(new Error(`charge point: no ${method} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      for (;;) {
        const found = list.slice(mark).find((call) => call.method === method && match(call.params));
        if (found) return found;
        await once(this, 'change', { signal: ac.signal });
      }
    } catch (err) {
      throw ac.signal.aborted ? ac.signal.reason : err;
    } finally {
      clearTimeout(timer);
    }
  }

  async #sendStatus(c: number, extra: { info?: string; vendorErrorCode?: string } = {}): Promise<void> {
    const state = this.connector(c);
    await this.call('StatusNotification', {
      connectorId: c,
      status: state.status,
      errorCode: state.errorCode,
      timestamp: new Date().toISOString(),
      ...extra,
    });
  }

  /** Runs a reaction after the current answer is sent, recording failures. */
  #later(reaction: () => Promise<unknown>): void {
    setImmediate(() => {
      reaction().catch((err: unknown) => {
        if ((err as Error).name === 'AbortError') this.interrupted++;
        else this.errors.push(err);
      });
    });
  }

  #handle(client: RPCClient): void {
    const record = (method: string, params: unknown) => {
      const call = { method, params: (params ?? {}) as Record<string, unknown> };
      this.received.push(call);
      this.emit('change');
      return call.params;
    };
    client.handle('RemoteStartTransaction', async ({ params }) => {
      const p = record('RemoteStartTransaction', params) as { connectorId: number; idTag: string };
      if (this.behaviour.remoteStart === 'reject') return { status: 'Rejected' };
      if (this.behaviour.remoteStart === 'accept')
        this.#later(() => this.#remoteStart(p.connectorId, p.idTag));
      return { status: 'Accepted' };
    });
    client.handle('RemoteStopTransaction', async ({ params }) => {
      const p = record('RemoteStopTransaction', params) as { transactionId: number };
      const c = [...this.connectors].find(([, s]) => s.transactionId === p.transactionId)?.[0];
      if (this.behaviour.remoteStop === 'reject' || c === undefined) return { status: 'Rejected' };
      if (this.behaviour.remoteStop === 'accept') this.#later(() => this.stopTransaction(c, 'Remote'));
      return { status: 'Accepted' };
    });
    client.handle('TriggerMessage', async ({ params }) => {
      const p = record('TriggerMessage', params) as { requestedMessage: string; connectorId?: number };
      if (!this.behaviour.triggers.has(p.requestedMessage)) return { status: 'NotImplemented' };
      const targets = p.connectorId === undefined ? [...this.connectors.keys()] : [p.connectorId];
      this.#later(async () => {
        if (p.requestedMessage === 'BootNotification') await this.boot();
        else if (p.requestedMessage === 'Heartbeat') await this.heartbeat();
        else if (p.requestedMessage === 'StatusNotification')
          for (const c of targets) await this.#sendStatus(c);
        else if (p.requestedMessage === 'MeterValues') for (const c of targets) await this.meterValues(c);
      });
      return { status: 'Accepted' };
    });
    client.handle('ChangeConfiguration', async ({ params }) => {
      record('ChangeConfiguration', params);
      return { status: 'Accepted' };
    });
    client.handle('ChangeAvailability', async ({ params }) => {
      const p = record('ChangeAvailability', params) as { connectorId: number };
      return {
        status: this.connectors.get(p.connectorId)?.transactionId === undefined ? 'Accepted' : 'Scheduled',
      };
    });
  }

  async #remoteStart(c: number, idTag: string): Promise<void> {
    const auth = (await this.call('Authorize', { idTag })) as { idTagInfo: { status: string } };
    if (auth.idTagInfo.status !== 'Accepted') return;
    const state = this.connector(c);
    const answer = (await this.call('StartTransaction', {
      connectorId: c,
      idTag,
      meterStart: state.meterWh,
      timestamp: new Date().toISOString(),
    })) as { transactionId: number; idTagInfo: { status: string } };
    state.transactionId = answer.transactionId;
    state.idTag = idTag;
    if (answer.idTagInfo.status !== 'Accepted') {
      // StopTransactionOnInvalidId: the pile ends a transaction the central system refused.
      await this.stopTransaction(c, 'DeAuthorized');
      return;
    }
    await this.status(c, 'Charging');
  }
}
