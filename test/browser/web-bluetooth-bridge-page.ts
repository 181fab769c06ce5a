/**
 * Browser entry for test/browser/web-bluetooth-bridge.test.ts: a minimal phone made of the
 * production pieces — the PWA's Web Bluetooth PhoneLink (web/src/ble/web-bluetooth-link.ts)
 * and the shared PhoneSession (shared/src/client/phone.ts) with the browser's WebCrypto. The
 * test arms it (`bridgePhone.arm`) and then clicks the button, as a driver taps; everything
 * the phone sees is recorded in `bridgePhone.log`. Bundled with Vite, run in real Chromium.
 */

import { createWebCrypto, fromHex, type PhoneEvent, PhoneSession, toHex } from '../../shared/src/index.ts';
import { connectGateway, type WebBluetoothLink } from '../../web/src/ble/web-bluetooth-link.ts';

/** One thing the page saw, in order (`t`: ms since the page started). */
export type PhoneLogEntry = { readonly t: number; readonly kind: string } & Record<string, unknown>;

export interface TapPlan {
  readonly voucherHex: string;
  readonly devicePrivateKeyHex: string;
  /** Connector for a token; absent = attach to the running session. */
  readonly connector?: number;
  readonly gatewayId?: string;
}

export interface BridgePhone {
  readonly log: PhoneLogEntry[];
  /** What the next click on #tap does. */
  arm(plan: TapPlan): void;
  /** Signs and sends a stop on the current session. */
  stop(): Promise<void>;
  /** `gatt.disconnect()` on the current link. */
  disconnect(): void;
  connected(): boolean;
}

declare global {
  interface Window {
    bridgePhone: BridgePhone;
  }
}

const crypto = createWebCrypto();
const log: PhoneLogEntry[] = [];
const record = (kind: string, fields: Record<string, unknown> = {}) =>
  log.push({ t: Math.round(performance.now()), kind, ...fields });
let plan: TapPlan | undefined;
let current: { link: WebBluetoothLink; session: PhoneSession } | undefined;

function describe(event: PhoneEvent): Record<string, unknown> {
  switch (event.kind) {
    case 'status':
      return {
        state: event.status.state,
        connector: event.status.connector,
        energyWh: event.status.energyWh,
        amount: event.status.amount,
        session: toHex(event.status.sessionId),
      };
    case 'receipt':
      return {
        connector: event.receipt.body.connector,
        energyWh: event.receipt.body.energyWh,
        chargedAmount: event.receipt.body.chargedAmount,
        stopReason: event.receipt.body.stopReason,
        session: toHex(event.receipt.body.sessionId),
      };
    case 'rejected':
    case 'error':
      return { code: event.code };
    default:
      return {};
  }
}

async function tap(): Promise<void> {
  const armed = plan;
  if (!armed) {
    record('failure', { failure: 'not armed' });
    return;
  }
  record('tap');
  let link: WebBluetoothLink;
  try {
    link = await connectGateway(armed.gatewayId === undefined ? {} : { gatewayId: armed.gatewayId });
  } catch (err) {
    const failure = (err as { failure?: string }).failure;
    record('failure', { failure: failure ?? (err as Error).name, message: (err as Error).message });
    return;
  }
  record('connected', { name: link.deviceName ?? null });
  try {
    const deviceKey = await crypto.importSigningKey(fromHex(armed.devicePrivateKeyHex));
    const session = new PhoneSession({ crypto, link, voucherBytes: fromHex(armed.voucherHex), deviceKey });
    session.onEvent((event) => record(event.kind, describe(event)));
    current = { link, session };
    await session.present(armed.connector);
    record('presented', { gatewayId: session.hello?.body.gatewayId ?? null });
  } catch (err) {
    record('failure', { failure: (err as Error).name, message: (err as Error).message });
  }
}

window.bridgePhone = {
  log,
  arm(next) {
    plan = next;
  },
  async stop() {
    if (!current) throw new Error('no session');
    await current.session.stop();
    record('stop-sent');
  },
  disconnect() {
    current?.link.disconnect();
  },
  connected: () => current?.link.connected ?? false,
};

const button = document.createElement('button');
button.id = 'tap';
button.textContent = 'Tap to charge';
button.addEventListener('click', () => void tap());
document.body.append(button);
record('ready');
