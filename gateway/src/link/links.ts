/**
 * The gateway's per-connection protocol, independent of the radio: implements the
 * {@link GattHandler} a transport calls. Per link it builds the hello once, reassembles
 * control writes, opens the sealed presentation, runs authorization (token) or proves the
 * device (attach), then speaks the secure channel: status and receipt out, stop, bundle and
 * report requests in.
 *
 * Abuse limits (all per link unless stated): a deadline from hello to presentation; the
 * reassembly deadline; caps on inbound bytes and writes; a cap on unauthenticated links
 * gateway-wide with one slot always kept free (the oldest unauthenticated link is dropped to
 * make room). Any malformed, oversized or out-of-order input gets an in-band error and the
 * link is dropped; nothing a phone sends can crash the process.
 * @module
 */

import {
  type Authorization,
  type AuthorizationContext,
  acceptPresentation,
  authorizeToken,
  type ConnectorStatus,
  type CryptoProvider,
  chunkMessage,
  createGatewayHandshake,
  decodePdu,
  decodeSessionMessage,
  ErrorCode,
  type ErrorCode as ErrorCodeT,
  encodePdu,
  encodeRejection,
  encodeSessionMessage,
  type GatewayHandshake,
  MAX_BUNDLE_BYTES,
  openPresentation,
  PduType,
  PresentationKind,
  ProtocolError,
  Reassembler,
  type SecureChannel,
  type SessionMessage,
  SessionMessageType,
  type SigningKey,
  type Status,
  verifyStopRequest,
} from '../../../shared/src/index.ts';
import type { GattHandler, GattTransport, LinkId } from '../contracts.ts';

export interface LinkLimits {
  /** A hello is single-use and expires after this (protocol: <= 30 s). */
  readonly helloTtlMs: number;
  /** From the first hello read to a complete presentation. */
  readonly presentationDeadlineMs: number;
  readonly reassemblyTimeoutMs: number;
  readonly maxInboundBytesPerLink: number;
  readonly maxWritesPerLink: number;
  /** Unauthenticated links allowed at once; one of them is always kept free. */
  readonly maxUnauthenticatedLinks: number;
}

/** The largest message a phone sends: a carried sync bundle in a secure frame, plus framing. */
const MAX_INBOUND_MESSAGE_BYTES = MAX_BUNDLE_BYTES + 256;

export const DEFAULT_LINK_LIMITS: LinkLimits = {
  helloTtlMs: 30_000,
  presentationDeadlineMs: 12_000,
  reassemblyTimeoutMs: 2_000,
  maxInboundBytesPerLink: 256 * 1024,
  maxWritesPerLink: 400,
  maxUnauthenticatedLinks: 4,
};

/** What a session looks like to a phone that attaches. */
export interface SessionView {
  readonly sessionId: Uint8Array;
  readonly cti: Uint8Array;
  readonly deviceKey: Uint8Array;
  /** Latest status, and the receipt once the session has ended. */
  readonly status: Status;
  readonly receipt?: Uint8Array | undefined;
}

export type SessionUpdate =
  | { readonly kind: 'status'; readonly status: Status }
  | { readonly kind: 'receipt'; readonly receipt: Uint8Array };

/** What the link layer needs from the rest of the gateway. */
export interface LinkServices {
  readonly crypto: CryptoProvider;
  readonly gatewayKey: SigningKey;
  readonly gatewayId: string;
  connectorStates(): readonly ConnectorStatus[];
  /** The gateway's working clock, Unix s. */
  now(): number;
  /** Everything authorization needs except the per-link hello check. */
  authorizationContext(): Omit<AuthorizationContext, 'consumeHello'>;
  /** Opens the ledger session and starts the pile; returns the session view. */
  startCharging(auth: Authorization): Promise<SessionView>;
  findSessionByCti(cti: Uint8Array): SessionView | undefined;
  stopCharging(sessionId: Uint8Array): Promise<void>;
  subscribe(sessionId: Uint8Array, listener: (update: SessionUpdate) => void): () => void;
  /** Installs a phone-carried bundle; 0 when installed, else an error code. */
  installBundle(bundle: Uint8Array): Promise<number>;
  /** The pending gateway report for a phone to carry home, if any. */
  pendingReport(): Promise<Uint8Array | undefined>;
}

export interface LinkLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

interface LinkState {
  readonly id: LinkId;
  readonly connectedAt: number;
  mtu: number;
  handshake: Promise<GatewayHandshake> | undefined;
  helloBuiltAt: number | undefined;
  helloUsed: boolean;
  readonly reassembler: Reassembler;
  inboundBytes: number;
  writes: number;
  channel: SecureChannel | undefined;
  session: SessionView | undefined;
  busy: boolean;
  unsubscribe: (() => void) | undefined;
  outbound: Promise<void>;
  deadline: ReturnType<typeof setTimeout> | undefined;
  closing: boolean;
}

export class GatewayLinks implements GattHandler {
  readonly #services: LinkServices;
  readonly #transport: GattTransport;
  readonly #limits: LinkLimits;
  readonly #log: LinkLog;
  readonly #nowMs: () => number;
  readonly #links = new Map<LinkId, LinkState>();

  constructor(
    services: LinkServices,
    transport: GattTransport,
    options: { limits?: Partial<LinkLimits>; log?: LinkLog; nowMs?: () => number } = {},
  ) {
    this.#services = services;
    this.#transport = transport;
    this.#limits = { ...DEFAULT_LINK_LIMITS, ...options.limits };
    this.#log = options.log ?? { info() {}, warn() {} };
    this.#nowMs = options.nowMs ?? (() => performance.now());
  }

  /** Links currently connected (for status and tests). */
  get linkCount(): number {
    return this.#links.size;
  }

  get unauthenticatedCount(): number {
    let n = 0;
    for (const link of this.#links.values()) if (!link.channel && !link.closing) n++;
    return n;
  }

  onConnect(id: LinkId, info: { readonly address?: string }): void {
    // Keep one slot free: an attacker holding connections open must not lock drivers out.
    while (this.unauthenticatedCount >= this.#limits.maxUnauthenticatedLinks - 1) {
      const oldest = [...this.#links.values()]
        .filter((l) => !l.channel && !l.closing)
        .sort((a, b) => a.connectedAt - b.connectedAt)[0];
      if (!oldest) break;
      this.#log.warn({ link: oldest.id }, 'evicting the oldest unauthenticated link to keep a slot free');
      this.#drop(oldest, ErrorCode.STATION_BUSY);
    }
    const link: LinkState = {
      id,
      connectedAt: this.#nowMs(),
      mtu: 23,
      handshake: undefined,
      helloBuiltAt: undefined,
      helloUsed: false,
      reassembler: new Reassembler(MAX_INBOUND_MESSAGE_BYTES, this.#limits.reassemblyTimeoutMs),
      inboundBytes: 0,
      writes: 0,
      channel: undefined,
      session: undefined,
      busy: false,
      unsubscribe: undefined,
      outbound: Promise.resolve(),
      deadline: undefined,
      closing: false,
    };
    // The presentation deadline runs from connect until the hello is read, then from the hello.
    link.deadline = setTimeout(
      () => this.#drop(link, ErrorCode.DEADLINE_EXCEEDED),
      this.#limits.presentationDeadlineMs,
    );
    this.#links.set(id, link);
    this.#log.info({ link: id, address: info.address }, 'link connected');
  }

  onMtu(id: LinkId, mtu: number): void {
    const link = this.#links.get(id);
    if (link) link.mtu = mtu;
  }

  onSubscribe(_id: LinkId): void {}

  onUnsubscribe(_id: LinkId): void {}

  async readHello(id: LinkId, offset: number): Promise<Uint8Array> {
    const link = this.#links.get(id);
    if (!link) return new Uint8Array(0);
    if (!link.handshake) {
      link.helloBuiltAt = this.#nowMs();
      clearTimeout(link.deadline);
      link.deadline = setTimeout(() => {
        if (!link.channel) this.#drop(link, ErrorCode.DEADLINE_EXCEEDED);
      }, this.#limits.presentationDeadlineMs);
      const s = this.#services;
      link.handshake = createGatewayHandshake(s.crypto, s.gatewayKey, {
        gatewayId: s.gatewayId,
        connectors: s.connectorStates(),
        gatewayTime: s.now(),
      });
    }
    const { hello } = await link.handshake;
    return hello.bytes.subarray(Math.min(offset, hello.bytes.length));
  }

  async onWrite(id: LinkId, data: Uint8Array): Promise<void> {
    const link = this.#links.get(id);
    if (!link || link.closing) return;
    link.writes++;
    link.inboundBytes += data.length;
    if (
      link.writes > this.#limits.maxWritesPerLink ||
      link.inboundBytes > this.#limits.maxInboundBytesPerLink
    ) {
      this.#drop(link, ErrorCode.RATE_LIMITED);
      return;
    }
    let pdu: Uint8Array | undefined;
    try {
      pdu = link.reassembler.push(data, this.#nowMs());
    } catch (err) {
      this.#drop(link, codeOf(err));
      return;
    }
    if (!pdu) return;
    if (link.busy) {
      // One message at a time per link: a phone that does not wait is misbehaving.
      this.#drop(link, ErrorCode.UNEXPECTED_MESSAGE);
      return;
    }
    link.busy = true;
    try {
      await this.#handlePdu(link, pdu);
    } catch (err) {
      this.#drop(link, codeOf(err));
    } finally {
      link.busy = false;
    }
  }

  onDisconnect(id: LinkId): void {
    const link = this.#links.get(id);
    if (!link) return;
    link.closing = true;
    clearTimeout(link.deadline);
    link.unsubscribe?.();
    link.channel?.close();
    this.#links.delete(id);
    this.#log.info({ link: id, authenticated: !!link.session }, 'link disconnected');
  }

  async #handlePdu(link: LinkState, bytes: Uint8Array): Promise<void> {
    const pdu = decodePdu(bytes);
    if (pdu.type === PduType.PRESENTATION) {
      if (link.channel || !link.handshake) throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
      await this.#handlePresentation(link, await link.handshake, pdu.body);
      return;
    }
    if (pdu.type !== PduType.FRAME || !link.channel) throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
    const message = decodeSessionMessage(await link.channel.open(pdu.body));
    await this.#handleMessage(link, message);
  }

  #consumeHello(link: LinkState) {
    if (link.helloUsed) return { ok: false as const, code: ErrorCode.HELLO_REUSED };
    if (link.helloBuiltAt === undefined || this.#nowMs() - link.helloBuiltAt > this.#limits.helloTtlMs) {
      return { ok: false as const, code: ErrorCode.HELLO_EXPIRED };
    }
    link.helloUsed = true;
    return { ok: true as const };
  }

  async #handlePresentation(
    link: LinkState,
    handshake: GatewayHandshake,
    envelope: Uint8Array,
  ): Promise<void> {
    const s = this.#services;
    const opened = await openPresentation(s.crypto, handshake, envelope);
    if (opened.kind === PresentationKind.TOKEN) {
      const ctx: AuthorizationContext = {
        ...s.authorizationContext(),
        consumeHello: () => this.#consumeHello(link),
      };
      const auth = await authorizeToken(ctx, handshake, opened);
      const session = await s.startCharging(auth);
      this.#log.info({ link: link.id, connector: auth.connector }, 'token authorized, charging started');
      this.#bind(link, auth.channel, session);
      return;
    }
    const hello = this.#consumeHello(link);
    if (!hello.ok) throw new ProtocolError(hello.code);
    const session = s.findSessionByCti(opened.cti);
    if (!session) throw new ProtocolError(ErrorCode.NO_SUCH_SESSION);
    const { channel } = await acceptPresentation(s.crypto, handshake, opened, session.deviceKey, opened.cti);
    this.#log.info({ link: link.id }, 'phone re-attached to its session');
    this.#bind(link, channel, session);
  }

  #bind(link: LinkState, channel: SecureChannel, session: SessionView): void {
    clearTimeout(link.deadline);
    link.channel = channel;
    link.session = session;
    this.#sendMessage(link, { type: SessionMessageType.STATUS, status: session.status });
    if (session.receipt)
      this.#sendMessage(link, { type: SessionMessageType.RECEIPT, receipt: session.receipt });
    link.unsubscribe = this.#services.subscribe(session.sessionId, (update) => {
      if (update.kind === 'status')
        this.#sendMessage(link, { type: SessionMessageType.STATUS, status: update.status });
      else this.#sendMessage(link, { type: SessionMessageType.RECEIPT, receipt: update.receipt });
    });
  }

  async #handleMessage(link: LinkState, message: SessionMessage): Promise<void> {
    const s = this.#services;
    const session = link.session!;
    switch (message.type) {
      case SessionMessageType.STOP:
        await verifyStopRequest(s.crypto, session.deviceKey, link.channel!, message.deviceSignature);
        await s.stopCharging(session.sessionId);
        this.#sendMessage(link, { type: SessionMessageType.ACK, acknowledged: message.type, code: 0 });
        return;
      case SessionMessageType.BUNDLE: {
        const code = await s.installBundle(message.bundle);
        this.#sendMessage(link, { type: SessionMessageType.ACK, acknowledged: message.type, code });
        return;
      }
      case SessionMessageType.REPORT_REQUEST: {
        const report = await s.pendingReport();
        if (report) this.#sendMessage(link, { type: SessionMessageType.REPORT, report });
        else this.#sendMessage(link, { type: SessionMessageType.ACK, acknowledged: message.type, code: 0 });
        return;
      }
      default:
        throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
    }
  }

  /** Queues a session message; frames are sealed and notified strictly in order. */
  #sendMessage(link: LinkState, message: SessionMessage): void {
    const channel = link.channel;
    if (!channel || link.closing) return;
    const sealed = channel.seal(encodeSessionMessage(message)); // counter taken now, in call order
    link.outbound = link.outbound
      .then(async () => this.#notifyPdu(link, encodePdu(PduType.FRAME, await sealed)))
      .catch((err: unknown) => this.#log.warn({ link: link.id, err: String(err) }, 'notification failed'));
  }

  async #notifyPdu(link: LinkState, pdu: Uint8Array): Promise<void> {
    if (!this.#links.has(link.id)) return;
    const unit = this.#transport.maxNotifySize(link.id);
    for (const piece of chunkMessage(pdu, unit)) await this.#transport.notify(link.id, piece);
  }

  /** Tells the phone why (in-band), then drops the link. */
  #drop(link: LinkState, code: ErrorCodeT): void {
    if (link.closing) return;
    link.closing = true;
    clearTimeout(link.deadline);
    this.#log.warn({ link: link.id, code }, 'dropping link');
    const rejection = encodeRejection(code);
    link.outbound = link.outbound
      .then(() => this.#notifyPdu(link, rejection))
      .catch(() => {})
      .finally(() => this.#transport.disconnect(link.id));
  }
}

function codeOf(err: unknown): ErrorCodeT {
  return err instanceof ProtocolError ? err.code : ErrorCode.INTERNAL;
}
