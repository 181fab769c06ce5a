/**
 * RFC 9052 interop: a third-party COSE implementation (`cose-js`, on node-cbor and elliptic)
 * verifies our COSE_Sign1 vouchers, receipts, sync bundles, hellos and reports, and refuses
 * them under the wrong key or with a changed payload.
 */

import cose from 'cose-js';
import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../shared/src/crypto/node.ts';
import { decompressPublicKey, fromHex, parseVoucher } from '../shared/src/index.ts';
import { loadVectors } from './support/load-vectors.ts';
import { buildWorld, issueTestVoucher } from './support/world.ts';

const SIGN1_TAG = 18;

function verifierFor(compressedKey: Uint8Array) {
  const raw = decompressPublicKey(compressedKey);
  return { key: { x: Buffer.from(raw.subarray(1, 33)), y: Buffer.from(raw.subarray(33)) } };
}

async function coseJsVerify(bytes: Uint8Array, key: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await cose.sign.verify(Buffer.from(bytes), verifierFor(key), { defaultType: SIGN1_TAG }),
  );
}

describe('RFC 9052 COSE_Sign1 interop with cose-js', () => {
  const v = loadVectors();
  const issuer = fromHex(v.keys.issuer.publicKey);
  const gateway = fromHex(v.keys.gateway.publicKey);
  const root = fromHex(v.keys.root.publicKey);

  it('verifies the vector voucher under the issuer key and returns its payload', async () => {
    const bytes = fromHex(v.voucher.bytes);
    const payload = await coseJsVerify(bytes, issuer);
    expect(payload).toEqual(parseVoucher(bytes).sign1.payload);
  });

  it('verifies the vector receipt, hello and report under the gateway key', async () => {
    for (const hex of [v.receipt.bytes, v.hello.bytes, v.report.bytes]) {
      await expect(coseJsVerify(fromHex(hex), gateway)).resolves.toBeInstanceOf(Uint8Array);
    }
  });

  it('verifies both vector sync bundles under the root key', async () => {
    for (const hex of [v.bundle.v1, v.bundle.v2]) {
      await expect(coseJsVerify(fromHex(hex), root)).resolves.toBeInstanceOf(Uint8Array);
    }
  });

  it('verifies randomized node:crypto signatures too', async () => {
    const world = await buildWorld(nodeCrypto);
    for (let i = 0; i < 10; i++) {
      const { voucher } = await issueTestVoucher(world);
      await coseJsVerify(voucher.bytes, world.issuer.key.publicKey);
    }
  });

  it('refuses a voucher under another key, and one with a changed payload byte', async () => {
    const bytes = fromHex(v.voucher.bytes);
    await expect(coseJsVerify(bytes, gateway)).rejects.toThrow(/missmatch|mismatch/i);
    const tampered = bytes.slice();
    tampered[40]! ^= 0x01; // inside the payload (after the protected header)
    await expect(coseJsVerify(tampered, issuer)).rejects.toThrow();
  });
});
