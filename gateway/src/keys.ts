/**
 * The gateway's own signing key (generated on first start, file mode 0600) and the root key
 * pinned at provisioning. The root key file is written only by provisioning (`install-root`
 * or, with the cloud, `provision`); a pinned root is never replaced silently.
 * @module
 */

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { newP256PrivateKey, nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  compressPublicKey,
  fromHex,
  gatewayKeyId,
  type RootKey,
  type SigningKey,
  toHex,
} from '../../shared/src/index.ts';

export interface GatewayIdentity {
  readonly key: SigningKey;
  readonly kid: Uint8Array;
  /** SHA-256 of the public key: what vouchers name so phones can check the hello. */
  readonly keyDigest: Uint8Array;
}

export function keyPaths(dataDir: string) {
  return { gatewayKey: join(dataDir, 'gateway-key.json'), rootKey: join(dataDir, 'root-key.json') };
}

/** Loads the gateway key, creating it (0600) on first start. */
export async function loadOrCreateGatewayKey(dataDir: string): Promise<GatewayIdentity> {
  const path = keyPaths(dataDir).gatewayKey;
  let privateKey: Uint8Array;
  if (existsSync(path)) {
    const stored = JSON.parse(readFileSync(path, 'utf8')) as { privateKey: string };
    privateKey = fromHex(stored.privateKey);
  } else {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    privateKey = newP256PrivateKey();
    writeFileSync(path, `${JSON.stringify({ privateKey: toHex(privateKey) })}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
  }
  const key = await nodeCrypto.importSigningKey(privateKey);
  return {
    key,
    kid: await gatewayKeyId(nodeCrypto, key.publicKey),
    keyDigest: await nodeCrypto.sha256(key.publicKey),
  };
}

export function loadRootKey(dataDir: string): RootKey | undefined {
  const path = keyPaths(dataDir).rootKey;
  if (!existsSync(path)) return undefined;
  const stored = JSON.parse(readFileSync(path, 'utf8')) as { kid: string; publicKey: string };
  return { kid: fromHex(stored.kid), publicKey: compressPublicKey(fromHex(stored.publicKey)) };
}

/** Pins the root key. Refuses to replace a different pinned root unless `force` (re-provisioning). */
export function pinRootKey(dataDir: string, root: RootKey, force = false): void {
  const path = keyPaths(dataDir).rootKey;
  const current = loadRootKey(dataDir);
  if (
    current &&
    !force &&
    (toHex(current.kid) !== toHex(root.kid) || toHex(current.publicKey) !== toHex(root.publicKey))
  ) {
    throw new Error(
      `a different root key is already pinned in ${path}; re-provision with --force to replace it`,
    );
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(
    path,
    `${JSON.stringify({ kid: toHex(root.kid), publicKey: toHex(compressPublicKey(root.publicKey)) })}\n`,
    { mode: 0o600 },
  );
}
