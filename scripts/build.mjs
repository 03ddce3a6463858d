// Builds what runs without tsx: the agent as one self-contained CommonJS file (it is copied into
// worker images as is), the CLI/server as ESM with its dependencies left in node_modules, and the
// web dashboard (dashboard/, Vite) into dist/dashboard, which the server serves at /.
import { build } from "esbuild";
import { rmSync } from "node:fs";
import { build as buildDashboard } from "vite";

rmSync("dist", { recursive: true, force: true });
await Promise.all([
  build({
    entryPoints: ["src/agent/main.ts"],
    outfile: "dist/agent.cjs",
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    // First line of the bundle: when it starts to run (the agent's boot trace, HODEI_AGENT_BOOT_TRACE).
    banner: { js: "globalThis.__hodeiEntryMs=performance.now();" },
    logLevel: "warning",
  }),
  build({
    entryPoints: { cli: "src/cli/main.ts" },
    outdir: "dist",
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: true,
    logLevel: "warning",
  }),
  buildDashboard({ configFile: "dashboard/vite.config.ts" }),
]);
