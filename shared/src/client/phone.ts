/**
 * The phone's side of a tap, independent of the radio: read the hello, check it against the
 * voucher, send the sealed token (or an attach), then follow the session through encrypted
 * status frames, stop it, and collect the receipt. The BLE layer is injected as a
 * {@link PhoneLink}, so the same code runs in the PWA (Web Bluetooth), the phone simulator
 * (noble) and tests (in-process).
 * @module
 */

import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, type ErrorCode as ErrorCodeT, ProtocolError } from '../errors.ts';
import {
  chunkMessage,
  decodePdu,
  decodeRejection,
  encodePdu,
  MAX_WRITE_BYTES,
  PduType,
  Reassembler,
} from '../gatt.ts';
import type { Hello } from '../messages/hello.ts';
import { parseReceipt, type Receipt } from '../messages/receipt.ts';
import type { SecureChannel } from '../session/channel.ts';
import {
  decodeSessionMessage,
  encodeSessionMessage,
  type SessionMessage,
  SessionMessageType,
  type Status,
} from '../session/messages.ts';
import {
  createAttachPresentation,
  createTokenPresentation,
  type PhonePresentation,
  signStopRequest,
} from '../session/presentation.ts';

/** What the phone needs from a connected BLE link to the gateway. */
export interface PhoneLink {
  /** The complete hello characteristic value (a long read). */
  readHello(): Promise<Uint8Array>;
  /** One write (≤ 512 B) on the control characteristic, with response. */
  write(unit: Uint8Array): Promise<void>;
  /** Subscribes to the events characteristic; returns the unsubscribe function. */
  onNotify(listener: (unit: Uint8Array) => void): () => void;
  /** Called when the link drops. */
  onDisconnect(listener: () => void): () => void;
}

export type PhoneEvent =
  | { readonly kind: 'status'; readonly status: Status }
  | { readonly kind: 'receipt'; readonly receipt: Receipt }
  | { readonly kind: 'rejected'; readonly code: ErrorCodeT }
  | { readonly kind: 'error'; readonly code: ErrorCodeT }
  | { readonly kind: 'ack'; readonly acknowledged: number; readonly code: number }
  | { readonly kind: 'report'; readonly report: Uint8Array }
  | { readonly kind: 'disconnected' };

export interface PhoneSessionOptions {
  readonly crypto: CryptoProvider;
  readonly link: PhoneLink;
  readonly voucherBytes: Uint8Array;
  readonly deviceKey: SigningKey;
  /** Monotonic clock for reassembly deadlines (ms). */
  readonly nowMs?: () => number;
}

/**
 * One connection's conversation. Create it, call `present` (token or attach), then listen to
 * `events`; `stop`, `sendBundle` and `requestReport` work once a channel exists.
 */
export class PhoneSession {
  readonly #options: PhoneSessionOptions;
  readonly #reassembler = new Reassembler();
  readonly #listeners = new Set<(event: PhoneEvent) => void>();
  readonly #unsubscribe: (() => void)[] = [];
  #channel: SecureChannel | undefined;
  #hello: Hello | undefined;
  /** Frames are opened strictly in arrival order (counters), one at a time. */
  #inbound: Promise<void> = Promise.resolve();

  constructor(options: PhoneSessionOptions) {
    this.#options = options;
    const now = options.nowMs ?? (() => performance.now());
    this.#unsubscribe.push(
      options.link.onNotify((unit) => {
        let pdu: Uint8Array | undefined;
        try {
          pdu = this.#reassembler.push(unit, now());
        } catch (err) {
          this.#emit({ kind: 'error', code: err instanceof ProtocolError ? err.code : ErrorCode.MALFORMED });
          return;
        }
        if (pdu) {
          const complete = pdu;
          this.#inbound = this.#inbound.then(() => this.#handlePdu(complete));
        }
      }),
      options.link.onDisconnect(() => this.#emit({ kind: 'disconnected' })),
    );
  }

  /** The verified hello of this connection, after `present`. */
  get hello(): Hello | undefined {
    return this.#hello;
  }

  onEvent(listener: (event: PhoneEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the next event matching `predicate` (or rejects after `timeoutMs`). */
  next(predicate: (event: PhoneEvent) => boolean, timeoutMs: number): Promise<PhoneEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new ProtocolError(ErrorCode.DEADLINE_EXCEEDED, 'no such event in time'));
      }, timeoutMs);
      const off = this.onEvent((event) => {
        if (!predicate(event)) return;
        clearTimeout(timer);
        off();
        resolve(event);
      });
    });
  }

  /**
   * Reads and checks the hello, then writes the sealed token (`connector` given) or an attach.
   * Throws ProtocolError for a hello that is not the voucher's gateway (pick another device).
   */
  async present(connector?: number, phoneTime?: number): Promise<PhonePresentation> {
    const { crypto, link, voucherBytes, deviceKey } = this.#options;
    const helloBytes = await link.readHello();
    const presentation =
      connector === undefined
        ? await createAttachPresentation(crypto, { helloBytes, voucherBytes, deviceKey })
        : await createTokenPresentation(crypto, {
            helloBytes,
            voucherBytes,
            deviceKey,
            connector,
            ...(phoneTime === undefined ? {} : { phoneTime }),
          });
    this.#hello = presentation.hello;
    this.#channel = presentation.channel;
    await this.#send(encodePdu(PduType.PRESENTATION, presentation.envelope));
    return presentation;
  }

  async stop(): Promise<void> {
    const channel = this.#requireChannel();
    const deviceSignature = await signStopRequest(this.#options.deviceKey, channel);
    await this.#sendMessage({ type: SessionMessageType.STOP, deviceSignature });
  }

  /** Hands the gateway a newer sync bundle (the phone as courier). */
  sendBundle(bundle: Uint8Array): Promise<void> {
    return this.#sendMessage({ type: SessionMessageType.BUNDLE, bundle });
  }

  /** Asks the gateway for its pending report, to carry it home. */
  requestReport(): Promise<void> {
    return this.#sendMessage({ type: SessionMessageType.REPORT_REQUEST });
  }

  close(): void {
    for (const off of this.#unsubscribe) off();
    this.#channel?.close();
  }

  #requireChannel(): SecureChannel {
    if (!this.#channel || this.#channel.closed) throw new ProtocolError(ErrorCode.SESSION_CLOSED);
    return this.#channel;
  }

  async #sendMessage(message: SessionMessage): Promise<void> {
    const frame = await this.#requireChannel().seal(encodeSessionMessage(message));
    await this.#send(encodePdu(PduType.FRAME, frame));
  }

  async #send(pdu: Uint8Array): Promise<void> {
    for (const unit of chunkMessage(pdu, MAX_WRITE_BYTES)) await this.#options.link.write(unit);
  }

  #emit(event: PhoneEvent): void {
    for (const listener of [...this.#listeners]) listener(event);
  }

  async #handlePdu(bytes: Uint8Array): Promise<void> {
    try {
      const pdu = decodePdu(bytes);
      if (pdu.type === PduType.REJECTION) {
        this.#emit({ kind: 'rejected', code: decodeRejection(pdu.body) });
        return;
      }
      if (pdu.type !== PduType.FRAME) throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
      const message = decodeSessionMessage(await this.#requireChannel().open(pdu.body));
      switch (message.type) {
        case SessionMessageType.STATUS:
          this.#emit({ kind: 'status', status: message.status });
          break;
        case SessionMessageType.RECEIPT:
          this.#emit({ kind: 'receipt', receipt: parseReceipt(message.receipt) });
          break;
        case SessionMessageType.ERROR:
          this.#emit({ kind: 'error', code: message.code });
          break;
        case SessionMessageType.ACK:
          this.#emit({ kind: 'ack', acknowledged: message.acknowledged, code: message.code });
          break;
        case SessionMessageType.REPORT:
          this.#emit({ kind: 'report', report: message.report });
          break;
        default:
          throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
      }
    } catch (err) {
      this.#emit({ kind: 'error', code: err instanceof ProtocolError ? err.code : ErrorCode.MALFORMED });
    }
  }
}
