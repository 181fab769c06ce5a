/**
 * The service's escalation when the BLE adapter is gone for good (gateway/src/service.ts):
 * the restart waits until no charging session is open — a customer's session is never cut
 * because phones can no longer connect.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXIT_ADAPTER_LOST, whenIdle } from '../../gateway/src/service.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('whenIdle', () => {
  it('acts at once when no session is open', () => {
    let calls = 0;
    whenIdle(
      () => 0,
      () => {
        calls += 1;
      },
    );
    expect(calls).toBe(1);
  });

  it('waits while sessions are open, acts once when the last one closes', async () => {
    const open = [2, 1, 1, 0, 0];
    let polls = 0;
    let calls = 0;
    whenIdle(
      () => open[Math.min(polls++, open.length - 1)]!,
      () => {
        calls += 1;
      },
      10,
    );
    expect(calls).toBe(0);
    await sleep(100);
    expect(calls).toBe(1);
    expect(polls).toBe(4); // stops polling once it acted
  });

  it('can be cancelled', async () => {
    let calls = 0;
    const cancel = whenIdle(
      () => 1,
      () => {
        calls += 1;
      },
      10,
    );
    cancel();
    await sleep(50);
    expect(calls).toBe(0);
  });

  it('its exit status is one the unit restarts (Restart=on-failure, not a prevented status)', () => {
    const unit = readFileSync(
      new URL('../../gateway/deploy/pilepass-gateway.service', import.meta.url),
      'utf8',
    );
    expect(unit).toMatch(/^Restart=on-failure$/m);
    const prevented = /^RestartPreventExitStatus=(.*)$/m.exec(unit)?.[1]?.split(/\s+/) ?? [];
    expect(prevented).not.toContain(String(EXIT_ADAPTER_LOST));
    expect(EXIT_ADAPTER_LOST).not.toBe(0);
  });
});
