/**
 * The secure channel and the BLE framing: per-direction AES-GCM with counters, where a
 * replayed, reordered, dropped or forged frame ends the session; chunking and reassembly at
 * the MTUs phones meet (23, 185, 247, 512); rejections travel in-band.
 */

import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  acceptPresentation,
  chunkMessage,
  createAttachPresentation,
  createTokenPresentation,
  decodePdu,
  decodeRejection,
  ErrorCode,
  encodePdu,
  encodeRejection,
  MAX_WRITE_BYTES,
  openPresentation,
  PduType,
  PresentationKind,
  Reassembler,
  SecureChannel,
} from '../shared/src/index.ts';
import { buildWorld, issueTestVoucher, newHandshake } from './support/world.ts';

const crypto = nodeCrypto;

function pair() {
  const k1 = crypto.randomBytes(32);
  const k2 = crypto.randomBytes(32);
  const digest = crypto.randomBytes(32);
  return {
    gateway: new SecureChannel(crypto, k1, k2, digest),
    phone: new SecureChannel(crypto, k2, k1, digest),
  };
}
const msg = (n: number) => Uint8Array.of(n, n, n);

/** The same voucher presented on two connections: each side's channel for both sessions. */
async function twoSessionsOfOneVoucher() {
  const world = await buildWorld(crypto);
  const { voucher, deviceKey } = await issueTestVoucher(world);
  const sessions: { phone: SecureChannel; gateway: SecureChannel }[] = [];
  for (let i = 0; i < 2; i++) {
    const handshake = await newHandshake(world);
    const phone = await createTokenPresentation(crypto, {
      helloBytes: handshake.hello.bytes,
      voucherBytes: voucher.bytes,
      deviceKey,
      connector: 1,
    });
    const opened = await openPresentation(crypto, handshake, phone.envelope);
    const { channel } = await acceptPresentation(
      crypto,
      handshake,
      opened,
      deviceKey.publicKey,
      voucher.claims.cti,
    );
    sessions.push({ phone: phone.channel, gateway: channel });
  }
  return { deviceKey, sessions };
}

describe('secure channel: replayed, reordered, dropped or forged frames end the session', () => {
  it('delivers frames in order both ways', async () => {
    const { gateway, phone } = pair();
    for (let i = 0; i < 5; i++) {
      expect(await phone.open(await gateway.seal(msg(i)))).toEqual(msg(i));
      expect(await gateway.open(await phone.seal(msg(100 + i)))).toEqual(msg(100 + i));
    }
  });

  it('replay', async () => {
    const { gateway, phone } = pair();
    const f0 = await gateway.seal(msg(0));
    await phone.open(f0);
    await expect(phone.open(f0)).rejects.toMatchObject({ code: ErrorCode.FRAME_REPLAYED });
    expect(phone.closed).toBe(true);
    await expect(phone.open(await gateway.seal(msg(1)))).rejects.toMatchObject({
      code: ErrorCode.SESSION_CLOSED,
    });
  });

  it('reorder', async () => {
    const { gateway, phone } = pair();
    const f0 = await gateway.seal(msg(0));
    const f1 = await gateway.seal(msg(1));
    await expect(phone.open(f1)).rejects.toMatchObject({ code: ErrorCode.FRAME_OUT_OF_ORDER });
    await expect(phone.open(f0)).rejects.toMatchObject({ code: ErrorCode.SESSION_CLOSED });
  });

  it('drop', async () => {
    const { gateway, phone } = pair();
    await gateway.seal(msg(0)); // lost on the radio
    await expect(phone.open(await gateway.seal(msg(1)))).rejects.toMatchObject({
      code: ErrorCode.FRAME_OUT_OF_ORDER,
    });
    expect(phone.closeReason).toBe(ErrorCode.FRAME_OUT_OF_ORDER);
  });

  it('forgery: a changed byte, a counter rewritten to look fresh, a frame from the other direction', async () => {
    const a = pair();
    const frame = await a.gateway.seal(msg(0));
    const bad = frame.slice();
    bad[bad.length - 1]! ^= 1;
    await expect(a.phone.open(bad)).rejects.toMatchObject({ code: ErrorCode.DECRYPT_FAILED });

    const b = pair();
    const own = await b.phone.seal(msg(9)); // phone→gateway frame reflected back at the phone
    await expect(b.phone.open(own)).rejects.toMatchObject({ code: ErrorCode.DECRYPT_FAILED });
  });

  it('frames of one session do not open in another of the same voucher', async () => {
    const { sessions } = await twoSessionsOfOneVoucher();
    const frame = await sessions[0]!.gateway.seal(msg(1));
    await expect(sessions[1]!.phone.open(frame)).rejects.toMatchObject({ code: ErrorCode.DECRYPT_FAILED });
  });

  it('attach yields a fresh channel bound to the new connection', async () => {
    const world = await buildWorld(crypto);
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const handshake = await newHandshake(world);
    const phone = await createAttachPresentation(crypto, {
      helloBytes: handshake.hello.bytes,
      voucherBytes: voucher.bytes,
      deviceKey,
    });
    const opened = await openPresentation(crypto, handshake, phone.envelope);
    expect(opened.kind).toBe(PresentationKind.ATTACH);
    const { channel } = await acceptPresentation(
      crypto,
      handshake,
      opened,
      deviceKey.publicKey,
      voucher.claims.cti,
    );
    expect(await phone.channel.open(await channel.seal(msg(7)))).toEqual(msg(7));
  });
});

describe('GATT framing', () => {
  it.each([23, 185, 247, 512])('a 400-byte token and a 2 kB receipt reassemble at MTU %i', (mtu) => {
    const unit = Math.min(mtu - 3, MAX_WRITE_BYTES);
    for (const size of [1, 400, 2_048]) {
      const pdu = encodePdu(PduType.FRAME, crypto.randomBytes(size));
      const units = chunkMessage(pdu, unit);
      expect(units.every((u) => u.length <= unit)).toBe(true);
      expect(units.length).toBe(Math.ceil((pdu.length + 2) / unit));
      const r = new Reassembler();
      const outs = units.map((u, i) => r.push(u, i));
      expect(outs.slice(0, -1).every((o) => o === undefined)).toBe(true);
      expect(outs.at(-1)).toEqual(pdu);
    }
  });

  it('rejections are in-band PDUs carrying a known error code', () => {
    const pdu = decodePdu(encodeRejection(ErrorCode.VOUCHER_SPENT));
    expect(pdu.type).toBe(PduType.REJECTION);
    expect(decodeRejection(pdu.body)).toBe(ErrorCode.VOUCHER_SPENT);
    expect(() => decodeRejection(Uint8Array.of(0x81, 0x19, 0x03, 0x09))).toThrow(
      expect.objectContaining({ code: ErrorCode.UNEXPECTED_TYPE }),
    );
    expect(() => decodePdu(Uint8Array.of(0x09, 0x00))).toThrow(
      expect.objectContaining({ code: ErrorCode.UNEXPECTED_MESSAGE }),
    );
  });

  it('messages larger than the 2-byte length prefix allows are refused at the sender', () => {
    expect(() => chunkMessage(new Uint8Array(65_536), 20)).toThrow(
      expect.objectContaining({ code: ErrorCode.FRAME_TOO_LARGE }),
    );
  });
});

describe('stop request: device-signed over this connection', () => {
  it('the session device can stop; a stranger or a stop from another connection cannot', async () => {
    const { signStopRequest, verifyStopRequest } = await import('../shared/src/index.ts');
    const { deviceKey, sessions: channels } = await twoSessionsOfOneVoucher();
    const [first, second] = channels as [(typeof channels)[0], (typeof channels)[0]];
    const signature = await signStopRequest(deviceKey, first.phone);
    await expect(
      verifyStopRequest(crypto, deviceKey.publicKey, first.gateway, signature),
    ).resolves.toBeUndefined();
    await expect(
      verifyStopRequest(crypto, deviceKey.publicKey, second.gateway, signature),
    ).rejects.toMatchObject({
      code: ErrorCode.WRONG_DEVICE,
    });
    const stranger = await crypto.generateSigningKey();
    const forged = await signStopRequest(stranger, first.phone);
    await expect(verifyStopRequest(crypto, deviceKey.publicKey, first.gateway, forged)).rejects.toMatchObject(
      {
        code: ErrorCode.WRONG_DEVICE,
      },
    );
  });
});
