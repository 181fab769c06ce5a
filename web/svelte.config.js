// Svelte options for the PWA (vite.config.ts passes this file explicitly: Vite's root is web/).
export default {
  compilerOptions: { runes: true },
};
