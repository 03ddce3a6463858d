// Builds the dashboard into dist/dashboard (served by `hodei server` at /). `npx vite --config
// dashboard/vite.config.ts` serves it with hot reload, sending the API to a server on :7070.
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: here,
  base: "/",
  plugins: [react()],
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/dashboard", import.meta.url)),
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { "/hodei.v1.": "http://127.0.0.1:7070" },
  },
});
