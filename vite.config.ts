import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

// The driver's PWA lives in web/: Svelte 5, installable (manifest + Workbox service worker),
// served under a strict CSP (web/index.html) — so nothing may be inlined into the HTML.
export default defineConfig({
  root: 'web',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  plugins: [
    svelte({ configFile: fileURLToPath(new URL('./web/svelte.config.js', import.meta.url)) }),
    VitePWA({
      registerType: 'prompt',
      // Registered from the app bundle (virtual:pwa-register in App.svelte), never inline: the CSP
      // forbids inline scripts, and 'prompt' needs the app to offer the update.
      injectRegister: false,
      includeAssets: ['icons/apple-touch-icon-180.png'],
      manifest: {
        name: 'PilePass',
        short_name: 'PilePass',
        description: 'Pay for and start an EV charging pile, even when the station is offline.',
        theme_color: '#0b7a5a',
        background_color: '#ffffff',
        display: 'standalone',
        start_url: '/',
        scope: '/',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icons/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
        ],
      },
      workbox: {
        // The app shell: everything the build emits, so the app opens with no network.
        globPatterns: ['**/*.{js,css,html,png,svg,webmanifest}'],
        navigateFallback: 'index.html',
        // The API is never answered from the app shell.
        navigateFallbackDenylist: [/^\/v1\//],
        cleanupOutdatedCaches: true,
        // The first install takes the open page at once (it can then reload offline); later
        // versions wait for the driver's "Reload" (registerType 'prompt'), never mid-charge.
        clientsClaim: true,
        // One worker file, no importScripts: the CSP's require-trusted-types-for applies inside
        // the worker too, where workbox's loader would pass importScripts a plain string.
        inlineWorkboxRuntime: true,
        runtimeCaching: [
          {
            // Receipts and reports carried home: a POST the page could not finish is queued in
            // IndexedDB and replayed by Background Sync (or at the next service-worker start
            // where the browser has no Background Sync). The cloud is idempotent by hash.
            urlPattern: /\/v1\/(receipts|reports)$/,
            method: 'POST',
            handler: 'NetworkOnly',
            options: {
              backgroundSync: { name: 'pilepass-uploads', options: { maxRetentionTime: 60 * 24 * 60 } },
            },
          },
        ],
      },
    }),
  ],
});
