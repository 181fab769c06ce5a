import { defineConfig } from 'vite';

// The driver's PWA lives in web/ (issue 5 adds Svelte, the PWA plugin and the app itself).
export default defineConfig({
  root: 'web',
  build: { outDir: 'dist', emptyOutDir: true },
});
