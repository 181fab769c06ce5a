/**
 * The phone simulator's voucher file: what a phone holds after buying a hold — the issued
 * voucher and the private half of the device key it is bound to. JSON, one object:
 *
 *   {
 *     "format": "pilepass-phone-voucher/1",
 *     "voucher": "<hex: the voucher's COSE_Sign1 bytes exactly as issued>",
 *     "devicePrivateKey": "<hex: 32-byte P-256 private scalar of the device key>"
 *   }
 *
 * `format` is optional on read. The file holds a private key: it is written with mode 0600.
 * A real phone keeps the key non-extractable (WebCrypto); this file exists for tests, load
 * tests and station technicians only.
 * @module
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { newP256PrivateKey, nodeCrypto } from '../../shared/src/crypto/node.ts';
import { fromHex, parseVoucher, type SigningKey, toHex, type Voucher } from '../../shared/src/index.ts';

export const VOUCHER_FILE_FORMAT = 'pilepass-phone-voucher/1';

export interface VoucherFile {
  readonly voucher: Voucher;
  readonly deviceKey: SigningKey;
  readonly devicePrivateKey: Uint8Array;
}

/** A fresh P-256 private scalar (left-padded to 32 bytes) for a simulated phone. */
export const newDevicePrivateKey = newP256PrivateKey;

/** The file's JSON text for a voucher and the device key's private scalar. */
export function encodeVoucherFile(voucherBytes: Uint8Array, devicePrivateKey: Uint8Array): string {
  if (devicePrivateKey.length !== 32) throw new RangeError('devicePrivateKey must be 32 bytes');
  return `${JSON.stringify(
    { format: VOUCHER_FILE_FORMAT, voucher: toHex(voucherBytes), devicePrivateKey: toHex(devicePrivateKey) },
    null,
    2,
  )}\n`;
}

export function writeVoucherFile(path: string, voucherBytes: Uint8Array, devicePrivateKey: Uint8Array): void {
  writeFileSync(path, encodeVoucherFile(voucherBytes, devicePrivateKey), { mode: 0o600 });
}

/** Reads and checks a voucher file; throws an Error naming the file and the problem. */
export async function readVoucherFile(path: string): Promise<VoucherFile> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`voucher file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const fields = (raw ?? {}) as Record<string, unknown>;
  const hex = (name: string): Uint8Array => {
    const value = fields[name];
    if (typeof value !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(value)) {
      throw new Error(`voucher file ${path}: "${name}" must be a hex string`);
    }
    return fromHex(value.toLowerCase());
  };
  if (fields.format !== undefined && fields.format !== VOUCHER_FILE_FORMAT) {
    throw new Error(`voucher file ${path}: unknown format ${JSON.stringify(fields.format)}`);
  }
  const voucherBytes = hex('voucher');
  const devicePrivateKey = hex('devicePrivateKey');
  if (devicePrivateKey.length !== 32) {
    throw new Error(`voucher file ${path}: "devicePrivateKey" must be 32 bytes`);
  }
  let voucher: Voucher;
  try {
    voucher = parseVoucher(voucherBytes);
  } catch (err) {
    throw new Error(`voucher file ${path}: not a voucher (${(err as Error).message})`, { cause: err });
  }
  const deviceKey = await nodeCrypto.importSigningKey(devicePrivateKey);
  return { voucher, deviceKey, devicePrivateKey };
}
