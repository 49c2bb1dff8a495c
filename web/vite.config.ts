import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `vite build web` from the repository root, or `vite build` inside web/: either way the root is this
// folder, and the output is web/dist with relative asset paths (the dashboard server serves it at `/`).
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The page is served from loopback; one file per entry is plenty and keeps the CSP simple.
    chunkSizeWarningLimit: 1024,
  },
});
