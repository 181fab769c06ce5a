/**
 * The issuer keyring: which keys may sign vouchers, with their pinned algorithm and validity.
 * A gateway builds it **only** from the latest sync bundle that verified under its pinned root
 * key (see `messages/bundle.ts`); there is no other way in.
 * @module
 */

import { toHex } from './bytes.ts';

export interface IssuerKey {
  readonly kid: Uint8Array;
  /** COSE algorithm; only ES256 (-7) is defined today. */
  readonly alg: number;
  /** SEC1 compressed P-256 public key. */
  readonly publicKey: Uint8Array;
  /** Vouchers with `iat` before this (Unix s) are refused: the key did not exist yet. */
  readonly notBefore: number;
  /** Vouchers with `iat` after this (Unix s) are refused: rotation retired the key. */
  readonly notAfter: number;
}

export type KeyLookup =
  | { readonly status: 'ok'; readonly key: IssuerKey }
  | { readonly status: 'unknown' }
  | { readonly status: 'revoked' };

export class IssuerKeyring {
  readonly #keys = new Map<string, IssuerKey>();
  readonly #revoked = new Set<string>();

  constructor(keys: readonly IssuerKey[], revokedKids: readonly Uint8Array[] = []) {
    for (const key of keys) this.#keys.set(toHex(key.kid), key);
    for (const kid of revokedKids) this.#revoked.add(toHex(kid));
  }

  lookup(kid: Uint8Array | undefined): KeyLookup {
    if (!kid) return { status: 'unknown' };
    const id = toHex(kid);
    if (this.#revoked.has(id)) return { status: 'revoked' };
    const key = this.#keys.get(id);
    return key ? { status: 'ok', key } : { status: 'unknown' };
  }

  get size(): number {
    return this.#keys.size;
  }
}
