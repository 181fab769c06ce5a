/**
 * The gateway's token authorization, in the order the protocol fixes, as framework-free logic
 * over a small context (the gateway supplies its ledger, clock and keyring; tests supply fakes):
 *
 *  1. issuer signature against the keyring from the root-signed bundle (kid, revoked kid,
 *     alg pinned per kid, low-S, validity of the key at `iat`)
 *  2. raise the trusted time floor from `iat` — after 1, before 3, so a cold start with the
 *     clock far behind cannot deadlock
 *  3. `nbf`/`exp` against the working clock, with tolerance
 *  4. this gateway, this connector
 *  5. version not below the voucher's minimum (no downgrade)
 *  6. voucher not spent; H(cti) not revoked
 *  7. hello fresh and single-use; device signature over this connection's transcript
 *  8. the station's currency, and amount >= the station's minimum
 *
 * Connector health and plug state (step 9) are the gateway's, after this returns.
 * @module
 */

import type { CryptoProvider } from './crypto/provider.ts';
import { ErrorCode, ProtocolError } from './errors.ts';
import type { IssuerKeyring } from './keyring.ts';
import { revocationHash } from './messages/bundle.ts';
import {
  checkVoucherTarget,
  checkVoucherTime,
  type Voucher,
  verifyVoucherSignature,
} from './messages/voucher.ts';
import type { SecureChannel } from './session/channel.ts';
import {
  acceptPresentation,
  type GatewayHandshake,
  type OpenedToken,
  type PresentationProof,
} from './session/presentation.ts';

export interface AuthorizationContext {
  readonly crypto: CryptoProvider;
  readonly keyring: IssuerKeyring;
  readonly gatewayId: string;
  /** Accepted clock error either way for nbf/exp, seconds. */
  readonly toleranceSeconds: number;
  readonly minimumAmount: number;
  readonly currency: string;
  /** Raises the trusted time floor to `issuedAt` (if higher); returns the working clock, Unix s. */
  observeIssuedAt(issuedAt: number): number;
  isSpent(cti: Uint8Array): boolean | Promise<boolean>;
  isRevoked(revocationHash: Uint8Array): boolean | Promise<boolean>;
  /** Marks this connection's hello used; false when it was used already or has expired. */
  consumeHello():
    | { ok: true }
    | { ok: false; code: typeof ErrorCode.HELLO_EXPIRED | typeof ErrorCode.HELLO_REUSED };
}

export interface Authorization {
  readonly voucher: Voucher;
  readonly connector: number;
  readonly channel: SecureChannel;
  readonly proof: PresentationProof;
}

export async function authorizeToken(
  ctx: AuthorizationContext,
  handshake: GatewayHandshake,
  token: OpenedToken,
): Promise<Authorization> {
  const { voucher } = token;
  const c = voucher.claims;
  await verifyVoucherSignature(ctx.crypto, voucher, ctx.keyring);
  const now = ctx.observeIssuedAt(c.issuedAt);
  checkVoucherTime(c, now, ctx.toleranceSeconds);
  checkVoucherTarget(c, ctx.gatewayId, token.connector);
  if (token.version < c.minVersion) throw new ProtocolError(ErrorCode.VERSION_DOWNGRADE);
  if (await ctx.isSpent(c.cti)) throw new ProtocolError(ErrorCode.VOUCHER_SPENT);
  if (await ctx.isRevoked(await revocationHash(ctx.crypto, c.cti)))
    throw new ProtocolError(ErrorCode.VOUCHER_REVOKED);
  const hello = ctx.consumeHello();
  if (!hello.ok) throw new ProtocolError(hello.code);
  const { channel, proof } = await acceptPresentation(ctx.crypto, handshake, token, c.deviceKey, c.cti);
  if (c.hold.currency !== ctx.currency) throw new ProtocolError(ErrorCode.CURRENCY_MISMATCH);
  if (c.hold.amount < ctx.minimumAmount) throw new ProtocolError(ErrorCode.AMOUNT_TOO_LOW);
  return { voucher, connector: token.connector, channel, proof };
}
