/**
 * The service-worker registration that replaced workbox-window: first install → "works
 * offline", a waiting update → "Reload" prompt, and applying it posts SKIP_WAITING and
 * reloads on the controller change — never by itself.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerServiceWorker } from '../../web/src/sw-register.ts';

class FakeWorker extends EventTarget {
  state = 'installing';
  readonly messages: unknown[] = [];
  postMessage(message: unknown) {
    this.messages.push(message);
  }
  become(state: string) {
    this.state = state;
    this.dispatchEvent(new Event('statechange'));
  }
}

function fakeContainer(options: { controller: boolean; waiting?: FakeWorker; installing?: FakeWorker }) {
  const registration = Object.assign(new EventTarget(), {
    waiting: options.waiting ?? null,
    installing: options.installing ?? null,
  });
  const container = Object.assign(new EventTarget(), {
    controller: options.controller ? {} : null,
    register: vi.fn(async () => registration),
  });
  vi.stubGlobal('navigator', { serviceWorker: container });
  return { container, registration };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

afterEach(() => vi.unstubAllGlobals());

describe('service worker registration', () => {
  it('first install: reports offline-ready, not an update', async () => {
    const installing = new FakeWorker();
    const { container } = fakeContainer({ controller: false, installing });
    const hooks = { onNeedRefresh: vi.fn(), onOfflineReady: vi.fn() };
    registerServiceWorker(hooks);
    await flush();
    expect(container.register).toHaveBeenCalledWith('/sw.js', { scope: '/' });
    installing.become('installed');
    expect(hooks.onOfflineReady).toHaveBeenCalledOnce();
    expect(hooks.onNeedRefresh).not.toHaveBeenCalled();
  });

  it('an update found later waits for the driver; Reload sends SKIP_WAITING and reloads on takeover', async () => {
    const { container, registration } = fakeContainer({ controller: true });
    const hooks = { onNeedRefresh: vi.fn(), onOfflineReady: vi.fn() };
    const update = registerServiceWorker(hooks);
    await flush();
    const next = new FakeWorker();
    registration.installing = next as never;
    registration.dispatchEvent(new Event('updatefound'));
    next.become('installed');
    expect(hooks.onNeedRefresh).toHaveBeenCalledOnce();
    expect(next.messages).toEqual([]); // nothing applies by itself
    registration.waiting = next as never;
    const reload = vi.fn();
    vi.stubGlobal('location', { reload });
    update(true);
    expect(next.messages).toEqual([{ type: 'SKIP_WAITING' }]);
    expect(reload).not.toHaveBeenCalled();
    container.dispatchEvent(new Event('controllerchange'));
    expect(reload).toHaveBeenCalledOnce();
  });

  it('a version already waiting at start is offered at once; no service worker API is harmless', async () => {
    fakeContainer({ controller: true, waiting: new FakeWorker() });
    const hooks = { onNeedRefresh: vi.fn(), onOfflineReady: vi.fn() };
    registerServiceWorker(hooks);
    await flush();
    expect(hooks.onNeedRefresh).toHaveBeenCalledOnce();
    vi.stubGlobal('navigator', {});
    expect(() => registerServiceWorker(hooks)(true)).not.toThrow();
  });
});
