/**
 * Provisioning with the cloud: the gateway sends the operator's one-time code and its public
 * key, and gets back the root key to pin and its first sync bundle (verified under that root
 * before anything is written). After this the gateway trusts only what the root signs.
 * @module
 */

import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { compressPublicKey, parseBundle, verifyBundle } from '../../shared/src/index.ts';
import { loadOrCreateGatewayKey, pinRootKey } from './keys.ts';

export interface ProvisionResult {
  readonly gatewayId: string;
  readonly rootKid: Uint8Array;
  readonly bundle: Uint8Array;
}

export async function provisionWithCloud(
  dataDir: string,
  cloudUrl: string,
  code: string,
  options: { force?: boolean; fetch?: typeof fetch } = {},
): Promise<ProvisionResult> {
  const identity = await loadOrCreateGatewayKey(dataDir);
  const res = await (options.fetch ?? fetch)(new URL('/v1/gateway/provision', cloudUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code, publicKey: Buffer.from(identity.key.publicKey).toString('base64url') }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json().catch(() => ({}))) as {
    gatewayId?: string;
    root?: { kid: string; publicKey: string };
    bundle?: string;
    error?: { code: string; message: string };
  };
  if (!res.ok || !body.gatewayId || !body.root || !body.bundle) {
    throw new Error(
      `provisioning refused: ${body.error?.code ?? res.status} ${body.error?.message ?? ''}`.trim(),
    );
  }
  const root = {
    kid: new Uint8Array(Buffer.from(body.root.kid, 'base64url')),
    publicKey: compressPublicKey(new Uint8Array(Buffer.from(body.root.publicKey, 'base64url'))),
  };
  const bundleBytes = new Uint8Array(Buffer.from(body.bundle, 'base64url'));
  // The first bundle must verify under the root we are about to pin, for this gateway.
  await verifyBundle(nodeCrypto, parseBundle(bundleBytes), root, {
    installedVersion: undefined,
    gatewayId: body.gatewayId,
  });
  pinRootKey(dataDir, root, options.force ?? false);
  return { gatewayId: body.gatewayId, rootKid: root.kid, bundle: bundleBytes };
}
