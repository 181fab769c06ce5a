/**
 * PilePass protocol library: pure TypeScript, no I/O, shared by cloud, gateway and phone.
 * Spec: docs/protocol.md. Node-only crypto lives in `crypto/node.ts` and is imported directly
 * by the gateway and cloud, never through this index (the web bundle must not pull it in).
 * @module
 */

export * from './authorize.ts';
export * from './bytes.ts';
export * from './cbor.ts';
export * from './client/phone.ts';
export * from './cose.ts';
export * from './crypto/noble.ts';
export * from './crypto/p256.ts';
export type * from './crypto/provider.ts';
export * from './crypto/webcrypto.ts';
export * from './errors.ts';
export * from './gatt.ts';
export * from './keyring.ts';
export * from './messages/bundle.ts';
export * from './messages/fields.ts';
export * from './messages/hello.ts';
export * from './messages/receipt.ts';
export * from './messages/report.ts';
export * from './messages/sync-request.ts';
export * from './messages/voucher.ts';
export * from './session/channel.ts';
export * from './session/messages.ts';
export * from './session/presentation.ts';
export * from './session/transcript.ts';
export * from './tariff.ts';
export * from './version.ts';
