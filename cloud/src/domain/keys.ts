/**
 * The cloud's signing keys: one **root** key (signs sync bundles only — it is what gateways pin)
 * and **issuer** keys with a `kid` (sign vouchers), rotated with overlap: a new issuer key
 * signs from now on, the old one stays valid for vouchers issued up to its `not_after`.
 * Private keys are stored encrypted at rest (AES-256-GCM) under a 32-byte master key from the
 * environment; plaintext keys exist only in this process's memory.
 * @module
 */

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { newP256PrivateKey, nodeCrypto } from '../../../shared/src/crypto/node.ts';
import { COSE_ALG_ES256, type IssuerKey, type RootKey, type SigningKey } from '../../../shared/src/index.ts';
import type { Database, Queryable } from '../db/database.ts';

export type KeyRole = 'root' | 'issuer';

export interface StoredKey {
  readonly kid: Uint8Array;
  readonly role: KeyRole;
  readonly publicKey: Uint8Array;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly revokedAt: number | null;
}

interface KeyRow {
  kid: Uint8Array;
  role: KeyRole;
  public_key: Uint8Array;
  encrypted_private_key: Uint8Array;
  not_before: number;
  not_after: number;
  revoked_at: number | null;
}

const ISSUER_CACHE_MS = 5_000;

/** Far future for keys without a planned retirement (Unix s, year 2200). */
const OPEN_ENDED = 7_258_118_400;

export class KeyStore {
  readonly #db: Database;
  readonly #masterKey: Uint8Array;
  readonly #signers = new Map<string, SigningKey>();
  #issuerCache: { at: number; value: { key: SigningKey; kid: Uint8Array } } | undefined;

  constructor(db: Database, masterKey: Uint8Array) {
    if (masterKey.length !== 32) throw new RangeError('the master key must be 32 bytes');
    this.#db = db;
    this.#masterKey = masterKey;
  }

  #encrypt(plain: Uint8Array): Uint8Array {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#masterKey, iv);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()]));
  }

  #decrypt(sealed: Uint8Array): Uint8Array {
    const decipher = createDecipheriv('aes-256-gcm', this.#masterKey, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    return new Uint8Array(
      Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]),
    );
  }

  /** Creates the root key and a first issuer key when the store is empty. */
  async ensureKeys(now: number): Promise<void> {
    await this.#db.transaction(async (tx) => {
      if (!(await tx.maybeOne("SELECT kid FROM signing_keys WHERE role = 'root'"))) {
        await this.#create(tx, 'root', now, OPEN_ENDED);
      }
      if (!(await tx.maybeOne("SELECT kid FROM signing_keys WHERE role = 'issuer' AND revoked_at IS NULL"))) {
        await this.#create(tx, 'issuer', now, OPEN_ENDED);
      }
    });
  }

  async #create(tx: Queryable, role: KeyRole, notBefore: number, notAfter: number): Promise<StoredKey> {
    const privateKey = newP256PrivateKey();
    const signer = await nodeCrypto.importSigningKey(privateKey);
    const kid =
      role === 'root' ? Uint8Array.of(0x52, ...randomBytes(3)) : Uint8Array.of(0x49, ...randomBytes(3));
    await tx.execute(
      'INSERT INTO signing_keys (kid, role, public_key, encrypted_private_key, not_before, not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [kid, role, signer.publicKey, this.#encrypt(privateKey), notBefore, notAfter, notBefore],
    );
    privateKey.fill(0);
    return { kid, role, publicKey: signer.publicKey, notBefore, notAfter, revokedAt: null };
  }

  /**
   * A new issuer key signs from `now`; the current one keeps verifying vouchers it issued up to
   * `now + overlapSeconds` (gateways learn the new key from the next bundle meanwhile).
   */
  async rotateIssuer(now: number, overlapSeconds: number): Promise<StoredKey> {
    this.#issuerCache = undefined;
    return this.#db.transaction(async (tx) => {
      await tx.execute(
        "UPDATE signing_keys SET not_after = $1 WHERE role = 'issuer' AND revoked_at IS NULL AND not_after > $1",
        [now + overlapSeconds],
      );
      return this.#create(tx, 'issuer', now, OPEN_ENDED);
    });
  }

  /** Revokes an issuer key (compromise): its kid goes on the revoked list of every bundle. */
  async revokeIssuer(kid: Uint8Array, now: number): Promise<void> {
    this.#issuerCache = undefined;
    await this.#db.execute("UPDATE signing_keys SET revoked_at = $1 WHERE kid = $2 AND role = 'issuer'", [
      now,
      kid,
    ]);
  }

  async #rows(role: KeyRole): Promise<KeyRow[]> {
    return this.#db.query<KeyRow>('SELECT * FROM signing_keys WHERE role = $1 ORDER BY created_at, kid', [
      role,
    ]);
  }

  async #signer(row: KeyRow): Promise<SigningKey> {
    const id = Buffer.from(row.kid).toString('hex');
    let signer = this.#signers.get(id);
    if (!signer) {
      const privateKey = this.#decrypt(row.encrypted_private_key);
      signer = await nodeCrypto.importSigningKey(privateKey);
      privateKey.fill(0);
      this.#signers.set(id, signer);
    }
    return signer;
  }

  async root(): Promise<{ key: SigningKey; pin: RootKey }> {
    const [row] = await this.#rows('root');
    if (!row) throw new Error('no root key: call ensureKeys first');
    return { key: await this.#signer(row), pin: { kid: row.kid, publicKey: row.public_key } };
  }

  /** The issuer key that signs new vouchers: the newest unrevoked one. */
  async currentIssuer(): Promise<{ key: SigningKey; kid: Uint8Array }> {
    // Re-read at most every few seconds: a rotation or revocation made by another process is
    // picked up within that time (rotation overlaps keys; a revoked kid is refused by gateways).
    const now = Date.now();
    if (this.#issuerCache && now - this.#issuerCache.at < ISSUER_CACHE_MS) return this.#issuerCache.value;
    const rows = (await this.#rows('issuer')).filter((r) => r.revoked_at === null);
    const row = rows.at(-1);
    if (!row) throw new Error('no issuer key: call ensureKeys first');
    const value = { key: await this.#signer(row), kid: row.kid };
    this.#issuerCache = { at: now, value };
    return value;
  }

  /** What bundles carry: valid issuer keys and revoked kids. */
  async issuerKeysForBundle(): Promise<{ issuers: IssuerKey[]; revokedKids: Uint8Array[] }> {
    const rows = await this.#rows('issuer');
    return {
      issuers: rows
        .filter((r) => r.revoked_at === null)
        .map((r) => ({
          kid: r.kid,
          alg: COSE_ALG_ES256,
          publicKey: r.public_key,
          notBefore: r.not_before,
          notAfter: r.not_after,
        })),
      revokedKids: rows.filter((r) => r.revoked_at !== null).map((r) => r.kid),
    };
  }

  /** Issuer keys for verifying vouchers at settlement (including retired and revoked ones). */
  async allIssuerKeys(): Promise<StoredKey[]> {
    return (await this.#rows('issuer')).map((r) => ({
      kid: r.kid,
      role: r.role,
      publicKey: r.public_key,
      notBefore: r.not_before,
      notAfter: r.not_after,
      revokedAt: r.revoked_at,
    }));
  }
}
