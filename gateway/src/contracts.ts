/**
 * Contracts between the gateway's modules (EVerest style: each module says what it provides
 * and what it needs; logic is tested against small fakes of these). Nothing here does I/O.
 *
 *   link (per-connection protocol)  ──needs──▶ GattTransport (ble/ or in-process)
 *   charging (sessions)             ──needs──▶ Ledger, PileDriver, TrustedClock
 *   authorizer                      ──needs──▶ Ledger, TrustedClock, keyring (from bundle)
 * @module
 */

import type { Tariff } from '../../shared/src/index.ts';

// ---- GATT transport ---------------------------------------------------------------------------

/** Random per-connection id, created at connect and forgotten at disconnect (HCI handles repeat). */
export type LinkId = string;

/** What the link layer provides to a transport. */
export interface GattHandler {
  onConnect(link: LinkId, info: { readonly address?: string }): void;
  /** ATT MTU negotiated for the link (23 until an exchange happens). */
  onMtu(link: LinkId, mtu: number): void;
  /** The phone enabled notifications on the events characteristic. */
  onSubscribe(link: LinkId): void;
  onUnsubscribe(link: LinkId): void;
  /**
   * One blob of the long read of the hello characteristic. Offset 0 of the first read builds
   * the hello; every later blob of that link reads the same bytes.
   */
  readHello(link: LinkId, offset: number): Promise<Uint8Array>;
  /** One complete write on the control characteristic (ATT long writes already joined). */
  onWrite(link: LinkId, data: Uint8Array): Promise<void>;
  onDisconnect(link: LinkId): void;
}

/** What a transport (bleno over HCI, or in-process for tests) provides. */
export interface GattTransport {
  start(handler: GattHandler): Promise<void>;
  stop(): Promise<void>;
  /** Largest notification payload for the link now (MTU − 3). */
  maxNotifySize(link: LinkId): number;
  /** Sends one notification unit on the events characteristic (≤ maxNotifySize). */
  notify(link: LinkId, unit: Uint8Array): Promise<void>;
  /** Drops the link (abuse, protocol error, shutdown). */
  disconnect(link: LinkId): void;
}

// ---- Pile drivers -----------------------------------------------------------------------------

/** What the gateway reads from one connector. Energy is the meter register in Wh. */
export interface ConnectorReading {
  readonly connector: number;
  readonly contactorOn: boolean;
  /** Vehicle plugged in; undefined when the hardware cannot tell. */
  readonly plugged: boolean | undefined;
  readonly faulted: boolean;
  readonly meterWh: number;
  readonly meterId: string;
  /** Present power in W, for plausibility and display. */
  readonly powerW: number;
  /** Signed meter data (e.g. OCMF) for the last reading, when the pile provides it. */
  readonly signedMeterData?: Uint8Array | undefined;
}

export type PileEvent =
  | { readonly kind: 'reading'; readonly reading: ConnectorReading }
  | { readonly kind: 'unplugged'; readonly connector: number }
  | { readonly kind: 'fault'; readonly connector: number; readonly detail: string }
  | { readonly kind: 'connection-lost' };

/**
 * One driver per pile technology — designed against three shapes: an OCPP 1.6J charge point
 * (the gateway as its local central system: RemoteStart/Stop, MeterValues, charging profile),
 * a relay enabling a certified EVSE controller (GPIO enable, contactor feedback, Modbus or S0
 * meter), and a CAN pile controller (start/stop/status/meter frames, heartbeats both ways).
 * Every driver switches a connector off on `stop`, on fault and on a lost link to the pile.
 * `close` releases the driver; whether a connector then stays on is the hardware's nature (a
 * GPIO enable drops out when the process ends; an OCPP pile or the sim pile keeps its state),
 * and the gateway's start-up recovery, which can see the ledger, decides what to do with it.
 */
export interface PileDriver {
  readonly connectors: readonly number[];
  read(connector: number): Promise<ConnectorReading>;
  /** Switches the connector on; `maxEnergyWh` caps the session where the pile supports it. */
  start(connector: number, limits: { readonly maxEnergyWh?: number }): Promise<void>;
  stop(connector: number): Promise<void>;
  /** Subscribes to readings and events; returns the unsubscribe function. */
  onEvent(listener: (event: PileEvent) => void): () => void;
  close(): Promise<void>;
}

// ---- Clock ------------------------------------------------------------------------------------

/** Unix seconds the gateway works with (never runs backwards except by nonce-bound cloud time). */
export interface TrustedClock {
  now(): number;
  /** Raises the floor from a verified voucher's `iat`; returns now(). */
  observeIssuedAt(issuedAt: number): number;
  /** Cloud time from a bundle bound to this gateway's own nonce: may move time backwards. */
  setCloudTime(cloudTime: number): void;
}

// ---- Ledger -----------------------------------------------------------------------------------

export interface NewSession {
  readonly sessionId: Uint8Array;
  readonly cti: Uint8Array;
  readonly connector: number;
  readonly voucherBytes: Uint8Array;
  readonly deviceKey: Uint8Array;
  readonly holdAmount: number;
  readonly currency: string;
  readonly tariff: Tariff;
  readonly deviceSignature: Uint8Array;
  readonly transcriptDigest: Uint8Array;
  readonly meterId: string;
  readonly meterStartWh: number;
  readonly startedAt: number;
}

export interface SessionRecord extends NewSession {
  readonly state: 'open' | 'closed';
  readonly lastMeterWh: number;
  readonly lastMeterAt: number;
  /** Receipt bytes once closed. */
  readonly receipt?: Uint8Array | undefined;
}
