// Builds what runs without tsx:
// - the agent as one self-contained CommonJS file (it is copied into worker images as is);
// - the CLI (dist/cli.js) as one minified ESM bundle with the client's dependencies inside it,
//   since loading them file by file from node_modules costs more than running the command; the
//   server's dependencies stay in node_modules and its code is a separate build (dist/server/),
//   which `hodei server` alone imports;
// - the control plane (dist/server/main.js) as ESM with its dependencies left in node_modules;
// - `hodei/client` (dist/client.js, ESM, dependencies in node_modules) and its declarations
//   (dist/types, tsc -p tsconfig.client.json);
// - the web dashboard (dashboard/, Vite) into dist/dashboard, which the server serves at /.
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { build } from "esbuild";
import { build as buildDashboard } from "vite";

/** Bundled into the CLI: what client commands load. Every other dependency stays external. */
const CLI_BUNDLED = new Set(["commander", "picocolors", "cli-table3", "@connectrpc/connect", "@connectrpc/connect-node", "@bufbuild/protobuf"]);
const { dependencies } = JSON.parse(readFileSync("package.json", "utf8"));
const cliExternal = Object.keys(dependencies).filter((name) => !CLI_BUNDLED.has(name));

/** The CLI's `import("../../server/main.js")` loads the separate server build. */
const serverAsExternal = {
  name: "server-as-external",
  setup(b) {
    b.onResolve({ filter: /\/server\/main\.js$/ }, () => ({ path: "./server/main.js", external: true }));
  },
};

const node = { bundle: true, platform: "node", format: "esm", target: "node20", logLevel: "warning" };

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
    logLevel: "warning",
  }),
  build({
    ...node,
    entryPoints: { cli: "src/cli/main.ts" },
    outdir: "dist",
    splitting: true,
    external: cliExternal,
    plugins: [serverAsExternal],
    minify: true,
    legalComments: "none",
    sourcemap: true,
    // The bundled CommonJS packages (commander, cli-table3) call require() for Node's modules.
    banner: { js: 'import{createRequire as __hodeiRequire}from"node:module";const require=__hodeiRequire(import.meta.url);' },
  }),
  build({ ...node, entryPoints: { main: "src/server/main.ts" }, outdir: "dist/server", splitting: true, packages: "external", sourcemap: true }),
  build({ ...node, entryPoints: { client: "src/client/index.ts" }, outdir: "dist", packages: "external", sourcemap: true }),
  promisify(execFile)(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.client.json"]).catch((err) => {
    throw new Error(`tsc -p tsconfig.client.json failed:\n${err.stdout}${err.stderr}`);
  }),
  buildDashboard({ configFile: "dashboard/vite.config.ts" }),
]);
