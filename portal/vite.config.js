import { defineConfig } from 'vite';

// Served by `capy serve` (and the deployed HTTP API) under /portal/, same origin as the API.
export default defineConfig({
  base: '/portal/',
  // Preact's automatic JSX runtime through Vite's own transformer: no Babel, no plugin.
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Everything ships as files: no data: URLs or inline code for the CSP to refuse.
    assetsInlineLimit: 0,
    // The modulepreload polyfill is only for browsers without it; every target browser has it.
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    proxy: { '/v1': 'http://127.0.0.1:3000' },
  },
});
