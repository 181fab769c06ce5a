/**
 * The secure channel after a presentation: AES-256-GCM with one key per direction and a
 * per-direction 64-bit counter in the nonce (4 zero bytes ‖ counter, big-endian). Each frame
 * states its counter so a failure can be named; the receiver accepts exactly the next one.
 * A replayed, reordered, dropped or forged frame **ends the session**: the channel closes
 * and every later call fails with SESSION_CLOSED.
 *
 * Frame: CBOR [counter: uint, ciphertext‖tag: bstr].
 * @module
 */

import { uintBE } from '../bytes.ts';
import { asArray, asBytes, asUint, decodeCbor, encodeCbor } from '../cbor.ts';
import type { CryptoProvider } from '../crypto/provider.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';

/** Largest plaintext one frame carries (receipts and reports are the big ones). */
export const MAX_FRAME_PLAINTEXT = 60_016;
const MAX_COUNTER = 2 ** 32;

function nonceFor(counter: number): Uint8Array {
  const nonce = new Uint8Array(12);
  nonce.set(uintBE(counter, 8), 4);
  return nonce;
}

export class SecureChannel {
  readonly #crypto: CryptoProvider;
  readonly #sendKey: Uint8Array;
  readonly #receiveKey: Uint8Array;
  #sendCounter = 0;
  #receiveCounter = 0;
  #closed: ErrorCode | undefined;
  /** SHA-256 of the session transcript both sides agreed on. */
  readonly transcriptDigest: Uint8Array;

  constructor(
    crypto: CryptoProvider,
    sendKey: Uint8Array,
    receiveKey: Uint8Array,
    transcriptDigest: Uint8Array,
  ) {
    this.#crypto = crypto;
    this.#sendKey = sendKey;
    this.#receiveKey = receiveKey;
    this.transcriptDigest = transcriptDigest;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Why the channel closed, if it did. */
  get closeReason(): ErrorCode | undefined {
    return this.#closed;
  }

  close(reason: ErrorCode = ErrorCode.SESSION_CLOSED): void {
    this.#closed ??= reason;
  }

  async seal(plaintext: Uint8Array): Promise<Uint8Array> {
    if (this.#closed !== undefined) throw new ProtocolError(ErrorCode.SESSION_CLOSED);
    if (plaintext.length > MAX_FRAME_PLAINTEXT) throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE);
    if (this.#sendCounter >= MAX_COUNTER) {
      this.close();
      throw new ProtocolError(ErrorCode.SESSION_CLOSED, 'counter exhausted');
    }
    const counter = this.#sendCounter++; // taken synchronously: frames are numbered in call order
    const ciphertext = await this.#crypto.aesGcmSeal(
      this.#sendKey,
      nonceFor(counter),
      new Uint8Array(0),
      plaintext,
    );
    return encodeCbor([counter, ciphertext]);
  }

  async open(frame: Uint8Array): Promise<Uint8Array> {
    if (this.#closed !== undefined) throw new ProtocolError(ErrorCode.SESSION_CLOSED);
    try {
      const [counterField, ctField] = asArray(
        decodeCbor(frame, { maxBytes: MAX_FRAME_PLAINTEXT + 64, maxDepth: 1, maxItems: 3 }),
        'secure frame',
        2,
      );
      const counter = asUint(counterField, 'counter');
      const ciphertext = asBytes(ctField, 'ciphertext', 16, MAX_FRAME_PLAINTEXT + 16);
      if (counter < this.#receiveCounter) throw new ProtocolError(ErrorCode.FRAME_REPLAYED);
      if (counter > this.#receiveCounter) throw new ProtocolError(ErrorCode.FRAME_OUT_OF_ORDER);
      const plaintext = await this.#crypto.aesGcmOpen(
        this.#receiveKey,
        nonceFor(counter),
        new Uint8Array(0),
        ciphertext,
      );
      this.#receiveCounter++;
      return plaintext;
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : ErrorCode.MALFORMED;
      this.close(code);
      throw err instanceof ProtocolError ? err : new ProtocolError(code);
    }
  }
}
