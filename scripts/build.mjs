// Builds what runs without tsx:
// - the agent as one self-contained CommonJS file (it is copied into worker images as is);
// - the CLI (dist/cli.cjs) as one minified CommonJS bundle with the client's dependencies inside
//   it, since loading them file by file from node_modules costs more than running the command, and
//   V8's code cache of it (dist/cli.cache, scripts/code-cache.mjs) that bin/load-cli.js uses; the
//   server's dependencies stay in node_modules and what only some commands need (the server, the
//   image build, config.ts) is the separate build below, which those commands import;
// - the control plane (dist/server/main.js), config.ts and the image build as ESM with their
//   dependencies left in node_modules;
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

/**
 * The CLI's lazy imports: of the separate server build (dist/server/), and of dockerode. They become
 * calls of `__hodeiImport`, which bin/load-cli.js provides (a code-cached script's own import()
 * fails on Node 20).
 */
const LAZY = {
  'import("../../server/main.js")': '__hodeiImport("./server/main.js")',
  'import("../../config.js")': '__hodeiImport("./server/config.js")',
  'import("../../providers/docker-image.js")': '__hodeiImport("./server/docker-image.js")',
  'import("dockerode")': '__hodeiImport("dockerode")',
};
const lazyImports = {
  name: "lazy-imports",
  setup(b) {
    b.onLoad({ filter: /src\/cli\/.*\.ts$/ }, (args) => {
      let contents = readFileSync(args.path, "utf8");
      for (const [from, to] of Object.entries(LAZY)) contents = contents.replaceAll(from, to);
      if (/\bimport\(/.test(contents)) throw new Error(`${args.path}: a lazy import the CLI build does not know (scripts/build.mjs LAZY)`);
      return { contents, loader: "ts" };
    });
  },
};

const node = { bundle: true, platform: "node", format: "esm", target: "node20", logLevel: "warning" };

/**
 * The agent and the CLI use src/core/headers.ts wherever their code (Connect's) names the global
 * Headers: Node 20's global compiles its whole fetch implementation on first use, 15-40 ms before
 * an agent's first Register and a command's first request.
 */
const OWN_HEADERS = ["src/core/headers.ts"];

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
    inject: OWN_HEADERS,
    logLevel: "warning",
  }),
  build({
    ...node,
    entryPoints: ["src/cli/main.ts"],
    outfile: "dist/cli.cjs",
    format: "cjs",
    external: cliExternal,
    plugins: [lazyImports],
    inject: OWN_HEADERS,
    minify: true,
    legalComments: "none",
    sourcemap: true,
  }).then(() => promisify(execFile)(process.execPath, ["scripts/code-cache.mjs"])),
  build({
    ...node,
    entryPoints: { main: "src/server/main.ts", config: "src/config.ts", "docker-image": "src/providers/docker-image.ts" },
    outdir: "dist/server",
    splitting: true,
    packages: "external",
    sourcemap: true,
  }),
  build({ ...node, entryPoints: { client: "src/client/index.ts" }, outdir: "dist", packages: "external", sourcemap: true }),
  promisify(execFile)(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.client.json"]).catch((err) => {
    throw new Error(`tsc -p tsconfig.client.json failed:\n${err.stdout}${err.stderr}`);
  }),
  buildDashboard({ configFile: "dashboard/vite.config.ts" }),
]);
