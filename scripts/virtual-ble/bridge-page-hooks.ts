/**
 * The page side of the Web Bluetooth bridge (scripts/virtual-ble/web-bluetooth-bridge.ts): an
 * init script that runs in every document of the bridged page before the app's own code, so
 * the app stays unchanged.
 *
 * - Notifications: Chromium's BluetoothEmulation has no command that pushes a value, but a
 *   `readValue()` left pending and answered later fires the page's `characteristicvaluechanged`
 *   on the very object the app holds. So `startNotifications()` is wrapped: once it resolves,
 *   the hook keeps one `readValue()` pending on that characteristic (re-issued after each
 *   answer) until `stopNotifications()` or the link ends; the bridge answers these held reads
 *   with the peripheral's notifications. Before the bridge ends a link it calls
 *   `releaseHoldsScript(name)`: the loops stop re-issuing reads on that device (a read still
 *   pending in Chromium's emulation would swallow the disconnection).
 * - Page-initiated disconnects: `BluetoothRemoteGATTServer.prototype.disconnect` sends no CDP
 *   event, so the hook reports it through a Playwright binding; the bridge then disconnects the
 *   real link too (the gateway sees the phone leave, as over the air).
 *
 * The script is plain JavaScript text (not a serialized function: transpilers may inject
 * helpers into functions that do not exist in the page). Browser-side only, no imports.
 * @module
 */

/** Name of the Playwright binding the hook reports to. */
export const BRIDGE_BINDING = '__pilepassWebBluetoothBridgeEvent';
/** Global the hook leaves on `window` (also guards against installing twice). */
export const BRIDGE_PAGE_GLOBAL = '__pilepassWebBluetoothBridge';

/** What the hook reports through the binding (JSON text). */
export type BridgePageMessage =
  /** The page called `device.gatt.disconnect()` while connected. */
  { readonly type: 'disconnect'; readonly name: string | null };

/** Parses a binding payload; undefined for anything that is not a {@link BridgePageMessage}. */
export function parseBridgePageMessage(payload: unknown): BridgePageMessage | undefined {
  if (typeof payload !== 'string') return undefined;
  try {
    const value = JSON.parse(payload) as { type?: unknown; name?: unknown };
    if (value.type === 'disconnect' && (typeof value.name === 'string' || value.name === null)) {
      return { type: 'disconnect', name: value.name };
    }
  } catch {
    // not ours
  }
  return undefined;
}

/** Page expression that stops holding reads on the characteristics of devices named `name` (null: all). */
export function releaseHoldsScript(name: string | null): string {
  const global = `window[${JSON.stringify(BRIDGE_PAGE_GLOBAL)}]`;
  return `${global} && ${global}.release && ${global}.release(${JSON.stringify(name)})`;
}

/** The init script (for `page.addInitScript({ content })` and, once, `page.evaluate`). */
export const BRIDGE_PAGE_SCRIPT = `(() => {
  if (window[${JSON.stringify(BRIDGE_PAGE_GLOBAL)}]) return;
  const state = { holding: new Set(), held: 0 };
  // Stops holding reads on a device's characteristics (before the bridge ends its link).
  state.release = (name) => {
    for (const c of state.holding) {
      const device = c.service && c.service.device;
      if (!device || device.name === name || name === null) state.holding.delete(c);
    }
  };
  Object.defineProperty(window, ${JSON.stringify(BRIDGE_PAGE_GLOBAL)}, { value: state });
  const Characteristic = window.BluetoothRemoteGATTCharacteristic;
  const Server = window.BluetoothRemoteGATTServer;
  if (!Characteristic || !Server) return;
  const report = (message) => {
    try {
      const binding = window[${JSON.stringify(BRIDGE_BINDING)}];
      if (typeof binding === 'function') binding(JSON.stringify(message)).catch(() => {});
    } catch {}
  };
  const readValue = Characteristic.prototype.readValue;
  const startNotifications = Characteristic.prototype.startNotifications;
  const stopNotifications = Characteristic.prototype.stopNotifications;
  const disconnect = Server.prototype.disconnect;
  const hold = async (characteristic) => {
    if (state.holding.has(characteristic)) return;
    state.holding.add(characteristic);
    try {
      while (state.holding.has(characteristic)) {
        state.held++;
        await readValue.call(characteristic);
      }
    } catch {
      // the link ended or notifications stopped: the bridge answered the held read with an error
    } finally {
      state.holding.delete(characteristic);
    }
  };
  Characteristic.prototype.startNotifications = async function () {
    const result = await startNotifications.call(this);
    void hold(this);
    return result;
  };
  Characteristic.prototype.stopNotifications = function () {
    state.holding.delete(this);
    return stopNotifications.call(this);
  };
  Server.prototype.disconnect = function () {
    const wasConnected = this.connected;
    const result = disconnect.call(this);
    if (wasConnected) report({ type: 'disconnect', name: this.device && this.device.name != null ? this.device.name : null });
    return result;
  };
})();`;
