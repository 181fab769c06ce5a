/**
 * A real station over the emulated HCI link (test/support/station.ts): the `pilepass-gateway`
 * process on one btvirt controller, the sim pile as its own process, and every phone a
 * `pilepass-phone-sim` process on another controller. The in-process scenarios of
 * gateway-links.test.ts, now over BLE: success to pile ON and a verified receipt, rejections
 * as the phone sees them, MTU 23 and 256, concurrent phones, a dropped link and re-attach, a
 * stranger's attach, a carried bundle; then the gateway's own view after it stopped.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newDevicePrivateKey } from '../../gateway/phone-sim/voucher-file.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { revocationHash, signBundle } from '../../shared/src/index.ts';
import {
  PHONE_EXIT,
  type PhoneSimResult,
  type PhoneStep,
  type Station,
  startStation,
} from '../support/station.ts';

const crypto = nodeCrypto;
let station: Station;
const timings: Record<string, string> = {};

/** One line of timings per phone run, printed at the end. */
function note(label: string, r: PhoneSimResult): void {
  const ms = (name: string) => r.steps.find((s) => s.step === name)?.ms;
  const done = r.steps.find((s) => s.step === 'done');
  timings[label] = [
    `connect ${ms('connect')} ms`,
    `hello ${ms('hello')} ms`,
    `present ${ms('token') ?? ms('attach')} ms`,
    `result ${ms('result')} ms`,
    ...(ms('stop') === undefined ? [] : [`stop→receipt ${ms('stop')} ms`]),
    `total ${done?.totalMs ?? '?'} ms in the simulator`,
  ].join(', ');
}

const charging = (s: PhoneStep) =>
  s.step === 'status' && s.state === 'CHARGING' && (s.energyWh as number) > 0;

/** Exit code, with the run's transcript and the gateway's recent log as the failure message. */
function expectExit(r: PhoneSimResult, code: number): void {
  expect(r.code, `${r.transcript}\n--- gateway log (tail)\n${station.gatewayLog().slice(-3_000)}`).toBe(code);
}

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const contactor = async (connector: number) =>
  (await station.pileState()).connectors.find((c) => c.connector === connector)!;

describe('a real station over the emulated HCI link (btvirt)', () => {
  beforeAll(async () => {
    station = await startStation({ phones: 2, speed: 30 });
  }, 180_000);

  afterAll(async () => {
    await station?.stop();
    if (station) console.info('station start-up (ms):', station.timings, 'HCI hub:', station.hciStats());
    if (Object.keys(timings).length > 0) console.info('phone-sim over btvirt:', timings);
  }, 60_000);

  let firstVoucherFile = '';

  it('success at MTU 256: the pile switches on, statuses flow, a signed stop ends it with a verified receipt', async () => {
    const v = await station.issueVoucher({ connector: 1 });
    firstVoucherFile = v.file;
    const run = station.startPhoneSim(['--voucher', v.file, '--stop-after-ms', '1500']);
    await run.waitForStep(charging);
    const on = await contactor(1);
    expect(on.contactorOn).toBe(true);
    expect(on.powerW).toBeGreaterThan(0);
    const r = await run.result;
    expectExit(r, PHONE_EXIT.OK);
    note('MTU 256', r);

    expect(r.step('mtu')).toMatchObject({ mtu: 256, maxNotify: 253 });
    expect(r.step('hello')).toMatchObject({ gatewayId: station.gatewayId, version: 1 });
    expect(r.step('check')).toMatchObject({ ok: true });
    expect(r.step('token')).toMatchObject({ writes: 1 });
    const result = r.step('result');
    expect(result).toMatchObject({ ok: true, state: 'CHARGING', connector: 1 });
    const energies = r.all('status').map((s) => s.energyWh as number);
    expect(energies.length).toBeGreaterThanOrEqual(3);
    expect([...energies].sort((a, b) => a - b)).toEqual(energies); // never runs backwards
    expect(r.step('stop').ms).toBeLessThan(5_000);
    const receipt = r.step('receipt');
    expect(receipt).toMatchObject({
      verified: true,
      signature: true,
      proof: true,
      forVoucher: true,
      session: result.session,
      connector: 1,
      stopReason: 'DRIVER_REQUEST',
      currency: 'CNY',
    });
    expect(receipt.energyWh as number).toBeGreaterThan(0);
    expect(receipt.chargedAmount).toBe(receipt.computedAmount);
    expect((await contactor(1)).contactorOn).toBe(false);
  });

  it('MTU 23: long hello read and prepared token write at the minimum MTU', async () => {
    const v = await station.issueVoucher({ connector: 2 });
    const r = await station.phoneSim(['--voucher', v.file, '--mtu', '23', '--stop-after-ms', '800'], {
      phone: 1,
    });
    expectExit(r, PHONE_EXIT.OK);
    note('MTU 23', r);
    expect(r.step('mtu')).toMatchObject({ mtu: 23, maxNotify: 20 });
    expect(r.step('hello').bytes as number).toBeGreaterThan(22); // needed Read Blobs
    expect(r.step('token').bytes as number).toBeGreaterThan(20); // needed Prepare Writes
    expect(r.step('receipt')).toMatchObject({ verified: true, connector: 2, stopReason: 'DRIVER_REQUEST' });
  });

  describe('each rejection reaches the phone in-band', () => {
    const refused = (r: PhoneSimResult, code: number, name: string, message: string) => {
      expectExit(r, PHONE_EXIT.REFUSED);
      expect(r.step('result')).toMatchObject({ ok: false, kind: 'rejected', code, name, message });
      expect(r.all('receipt')).toHaveLength(0);
    };

    it('voucher used twice', async () => {
      const r = await station.phoneSim(['--voucher', firstVoucherFile]);
      refused(r, 208, 'VOUCHER_SPENT', 'The voucher has already been used.');
      note('rejected (208)', r);
    });

    it('expired voucher', async () => {
      const now = Math.floor(Date.now() / 1000);
      const v = await station.issueVoucher({
        issuedAt: now - 3 * 86_400,
        notBefore: now - 3 * 86_400,
        expiresAt: now - 2 * 86_400,
      });
      refused(
        await station.phoneSim(['--voucher', v.file]),
        204,
        'VOUCHER_EXPIRED',
        'The voucher has expired.',
      );
    });

    it('wrong connector', async () => {
      const v = await station.issueVoucher({ connector: 2 });
      const r = await station.phoneSim(['--voucher', v.file, '--connector', '1'], { phone: 1 });
      refused(r, 207, 'WRONG_CONNECTOR', 'The voucher is for a different connector.');
      // Refused before anything was spent: the same voucher still works where it belongs.
      const ok = await station.phoneSim(['--voucher', v.file, '--stop-after-ms', '0'], { phone: 1 });
      expectExit(ok, PHONE_EXIT.OK);
    });

    it('a voucher for another station: the phone refuses the hello itself (exit 4)', async () => {
      const v = await station.issueVoucher({ gatewayKeyDigest: new Uint8Array(32).fill(7) });
      const r = await station.phoneSim(['--voucher', v.file]);
      expectExit(r, PHONE_EXIT.WRONG_STATION);
      expect(r.step('check')).toMatchObject({ ok: false, code: 305, name: 'HELLO_SIGNATURE_INVALID' });
      expect(r.all('token')).toHaveLength(0);
    });
  });

  it('two phones on two connectors at once', async () => {
    const a = await station.issueVoucher({ connector: 1 });
    const b = await station.issueVoucher({ connector: 2 });
    const runs = [
      station.startPhoneSim(['--voucher', a.file, '--stop-after-ms', '1500'], { phone: 0 }),
      station.startPhoneSim(['--voucher', b.file, '--stop-after-ms', '1500'], { phone: 1 }),
    ];
    await Promise.all(runs.map((run) => run.waitForStep(charging)));
    const state = await station.pileState();
    expect(state.connectors.map((c) => c.contactorOn)).toEqual([true, true]);
    const [ra, rb] = await Promise.all(runs.map((run) => run.result));
    expectExit(ra!, PHONE_EXIT.OK);
    expectExit(rb!, PHONE_EXIT.OK);
    note('concurrent A', ra!);
    note('concurrent B', rb!);
    expect(ra!.step('receipt')).toMatchObject({ verified: true, connector: 1 });
    expect(rb!.step('receipt')).toMatchObject({ verified: true, connector: 2 });
    expect(ra!.step('receipt').session).not.toBe(rb!.step('receipt').session);
    // Both phones were connected at the same time (each got its own link).
    const [la, lb] = [ra!, rb!].map((r) => [r.step('result').at, r.step('disconnect').at]);
    expect(la![0]! < lb![1]! && lb![0]! < la![1]!).toBe(true);
  });

  it('the same voucher from two phones at once: exactly one wins', async () => {
    const v = await station.issueVoucher({ connector: undefined });
    const results = await Promise.all([
      station.phoneSim(['--voucher', v.file, '--connector', '1', '--stop-after-ms', '500'], { phone: 0 }),
      station.phoneSim(['--voucher', v.file, '--connector', '2', '--stop-after-ms', '500'], { phone: 1 }),
    ]);
    const codes = results.map((r) => r.code).sort();
    const why = `${results.map((r) => r.transcript).join('\n')}\n--- gateway log (tail)\n${station.gatewayLog().slice(-3_000)}`;
    expect(codes, why).toEqual([PHONE_EXIT.OK, PHONE_EXIT.REFUSED]);
    const winner = results.find((r) => r.code === PHONE_EXIT.OK)!;
    const loser = results.find((r) => r.code === PHONE_EXIT.REFUSED)!;
    expect(winner.step('receipt')).toMatchObject({ verified: true });
    expect(loser.step('result')).toMatchObject({ ok: false, code: 208, name: 'VOUCHER_SPENT' });
    const state = await station.pileState();
    expect(state.connectors.every((c) => !c.contactorOn)).toBe(true);
  });

  it('link dropped mid-charge: charging goes on; a stranger cannot attach; the owner re-attaches, stops and fetches the receipt', async () => {
    const v = await station.issueVoucher({ connector: 1 });
    const first = station.startPhoneSim(['--voucher', v.file], { phone: 0 });
    await first.waitForStep('follow');
    await first.waitForStep(charging);
    const session = first.steps.find((s) => s.step === 'result')!.session as string;
    const logBefore = station.gatewayLog().length;
    const killed = await first.kill('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');

    // The gateway sees the link end (supervision timeout) and keeps charging without the phone.
    await waitUntil(
      () => /"authenticated":true,"msg":"link disconnected"/.test(station.gatewayLog().slice(logBefore)),
      'the gateway to see the dropped link',
    );
    const before = await contactor(1);
    expect(before.contactorOn).toBe(true);
    await waitUntil(async () => (await contactor(1)).meterWh > before.meterWh, 'energy to keep flowing');

    const stranger = station.writeVoucherFile(v.voucher.bytes, newDevicePrivateKey(), 'stranger.json');
    const refused = await station.phoneSim(['--voucher', stranger, '--attach'], { phone: 1 });
    expectExit(refused, PHONE_EXIT.REFUSED);
    expect(refused.step('start')).toMatchObject({ mode: 'attach', deviceKeyMatches: false });
    expect(refused.step('result')).toMatchObject({
      ok: false,
      code: 306,
      name: 'WRONG_DEVICE',
      message: 'This phone did not start the session.',
    });
    expect((await contactor(1)).contactorOn).toBe(true);

    const back = await station.phoneSim(['--voucher', v.file, '--attach', '--stop-after-ms', '300'], {
      phone: 1,
    });
    expectExit(back, PHONE_EXIT.OK);
    note('re-attach', back);
    expect(back.step('attach')).toMatchObject({ writes: 1 });
    expect(back.step('result')).toMatchObject({ ok: true, state: 'CHARGING', session });
    const receipt = back.step('receipt');
    expect(receipt).toMatchObject({ verified: true, session, stopReason: 'DRIVER_REQUEST' });
    expect(receipt.energyWh as number).toBeGreaterThan(0);
    expect((await contactor(1)).contactorOn).toBe(false);

    // Once more later, from the first phone: the finished session hands over the same receipt.
    const later = await station.phoneSim(['--voucher', v.file, '--attach'], { phone: 0 });
    expectExit(later, PHONE_EXIT.OK);
    expect(later.step('result')).toMatchObject({ ok: true, state: 'FINISHED', session });
    expect(later.step('receipt')).toMatchObject({ verified: true, sequence: receipt.sequence });
    expect(later.all('stop')).toHaveLength(0);
  });

  it('a bundle carried by the phone: ack 0, version 2 installed, its revocation refuses the victim; an older one is refused', async () => {
    const victim = await station.issueVoucher({ connector: 1 });
    const v2 = await signBundle(station.world.root.key, station.world.root.kid, {
      ...station.bundle.body,
      version: station.bundle.body.version + 1,
      issuedAt: Math.floor(Date.now() / 1000) - 60,
      revokedVouchers: [await revocationHash(crypto, victim.voucher.claims.cti)],
    });
    const bundleFile = station.writeFile('bundle-v2.cose', v2.bytes);
    const reportFile = `${station.dir}/report.cose`;
    const courier = await station.issueVoucher({ connector: 2 });
    const r = await station.phoneSim(
      ['--voucher', courier.file, '--bundle', bundleFile, '--stop-after-ms', '300', '--report', reportFile],
      { phone: 1 },
    );
    expectExit(r, PHONE_EXIT.OK);
    note('courier', r);
    expect(r.step('bundle')).toMatchObject({ ok: true, code: 0, version: v2.body.version });
    expect(r.step('receipt')).toMatchObject({ verified: true, connector: 2 });
    const report = r.step('report');
    expect(report).toMatchObject({ verified: true, gatewayId: station.gatewayId, file: reportFile });
    expect(report.receipts as number).toBeGreaterThanOrEqual(5);
    expect(report.revocations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ bundleVersion: v2.body.version, spentBeforeInstall: 0 }),
      ]),
    );

    const revoked = await station.phoneSim(['--voucher', victim.file]);
    expectExit(revoked, PHONE_EXIT.REFUSED);
    expect(revoked.step('result')).toMatchObject({ code: 209, name: 'VOUCHER_REVOKED' });

    const stale = await station.issueVoucher({ connector: 2 });
    const old = station.writeFile('bundle-v1.cose', station.bundle.bytes);
    const outdated = await station.phoneSim(
      ['--voucher', stale.file, '--bundle', old, '--stop-after-ms', '0'],
      {
        phone: 1,
      },
    );
    expectExit(outdated, PHONE_EXIT.REFUSED);
    expect(outdated.step('bundle')).toMatchObject({ ok: false, code: 601, name: 'BUNDLE_OUTDATED' });
    expect(outdated.step('receipt')).toMatchObject({ verified: true }); // the session still ended well
  });

  it('after the gateway stops: its status shows bundle 2 and no open session, and its ledger verifies', async () => {
    const exit = await station.stopGateway();
    expect(exit.code, station.gatewayLog().slice(-2_000)).toBe(0);
    const status = station.gatewayCli(['status']);
    expect(status.code, status.stderr).toBe(0);
    const parsed = JSON.parse(status.stdout) as { bundleVersion: number; openSessions: unknown[] };
    expect(parsed.bundleVersion).toBe(station.bundle.body.version + 1);
    expect(parsed.openSessions).toEqual([]);
    const verify = station.gatewayCli(['ledger', 'verify']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect((await station.pileState()).connectors.every((c) => !c.contactorOn)).toBe(true);
  });

  it('stops everything it started', async () => {
    const pids = station.pids();
    expect(pids.length).toBeGreaterThanOrEqual(6);
    await station.stop();
    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive).toEqual([]);
  });
});
