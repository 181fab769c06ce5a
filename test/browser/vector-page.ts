/**
 * Browser entry for test/browser/webcrypto-vectors.test.ts: runs every test-vector check
 * against the browser's own WebCrypto, and checks that generated signing keys cannot be read
 * by page script. Bundled with Vite and loaded in real Chromium.
 */

import { createWebCrypto } from '../../shared/src/index.ts';
import { type CheckResult, checkAllVectors, type Vectors } from '../support/vector-checks.ts';

export interface VectorPageReport {
  readonly userAgent: string;
  readonly secureContext: boolean;
  readonly results: CheckResult[];
  /** A generated signing key is non-extractable and exporting it as PKCS#8 rejects. */
  readonly nonExtractable: boolean;
  readonly nonExtractableDetail: string;
}

declare global {
  interface Window {
    runVectorChecks: (vectors: Vectors) => Promise<VectorPageReport>;
  }
}

async function checkNonExtractable(): Promise<{ ok: boolean; detail: string }> {
  const key = await createWebCrypto().generateSigningKey();
  const privateKey = key.keyPair.privateKey;
  if (privateKey.extractable) return { ok: false, detail: 'private key is extractable' };
  try {
    await crypto.subtle.exportKey('pkcs8', privateKey);
  } catch (err) {
    return { ok: true, detail: `pkcs8 export rejected: ${String(err)}` };
  }
  return { ok: false, detail: 'pkcs8 export of the private key succeeded' };
}

window.runVectorChecks = async (vectors) => {
  const results = await checkAllVectors(createWebCrypto(), vectors);
  const nonExtractable = await checkNonExtractable();
  return {
    userAgent: navigator.userAgent,
    secureContext: isSecureContext,
    results,
    nonExtractable: nonExtractable.ok,
    nonExtractableDetail: nonExtractable.detail,
  };
};
