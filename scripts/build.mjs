// Builds what runs without tsx:
// - the agent as one self-contained CommonJS bundle (dist/agent-main.cjs), V8's code cache of it
//   (dist/agent-main.cache) and dist/agent.cjs, which runs the one with the other
//   (scripts/agent-loader.cjs); dist/agent-snapshot.cjs, the entry from which a startup snapshot
//   of the agent is built by the node that will run it: dist/agent.blob by this node, which local
//   workers start from when they run on it (else from agent.cjs), and an agent runtime's own for
//   Docker and Kubernetes workers (src/providers/agent-runtime.ts);
// - the CLI (dist/cli.cjs) as one minified CommonJS bundle with the client's dependencies inside
//   it, since loading them file by file from node_modules costs more than running the command, and
//   V8's code cache of it (dist/cli.cache, scripts/code-cache.mjs) that bin/load-cli.js uses, with
//   the protobuf descriptors it holds decoded here (scripts/embedded-descriptors.mjs), and
//   dist/cli-lazy.json, the property names of the built-in modules that bin/load-cli.js loads only
//   when a command uses them, as this node has them; the
//   server's dependencies stay in node_modules and what only some commands need (the server, the
//   image build, config.ts) is the separate build below, which those commands import;
// - the control plane (dist/server/main.js), config.ts and the image build as ESM, with the plain
//   JavaScript packages every start loads bundled in (SERVER_BUNDLED: loaded file by file from
//   node_modules they made a SQLite server's restart about 700 ms instead of about 410), the
//   Kubernetes client too (its own chunk, imported only with that provider: a server with it
//   started in about 600 ms instead of about 860), and the rest left in node_modules: native ones,
//   dockerode (ssh2, which it loads at once, reads __dirname, which an ES module bundle lacks) and
//   pg (both loaded lazily), pino (its transports run in worker threads) and OpenTelemetry (one
//   copy of its global API);
// - `hodei/client` (dist/client.js, ESM, dependencies in node_modules) and its declarations
//   (dist/types, tsc -p tsconfig.client.json);
// - the web dashboard (dashboard/, Vite) into dist/dashboard, which the server serves at /;
// - then the two code caches, taken after one real job through a throwaway server (writeCodeCaches).
import { execFile, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { build as buildDashboard } from "vite";
import { LAZY_FILE, lazyKeys } from "../bin/load-cli.js";
import { collectDescriptors, embeddedDescriptors } from "./embedded-descriptors.mjs";

/** Bundled into the CLI: what client commands load. Every other dependency stays external. */
const CLI_BUNDLED = new Set(["commander", "picocolors", "cli-table3", "@connectrpc/connect", "@connectrpc/connect-node", "@bufbuild/protobuf"]);
const { dependencies } = JSON.parse(readFileSync("package.json", "utf8"));
const cliExternal = Object.keys(dependencies).filter((name) => !CLI_BUNDLED.has(name));
/** Bundled into the server: plain JavaScript it loads at every start. */
const SERVER_BUNDLED = new Set(["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "kysely", "zod", "prom-client", "croner", "@kubernetes/client-node"]);
const serverExternal = Object.keys(dependencies).filter((name) => !SERVER_BUNDLED.has(name));

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

/**
 * Writes the V8 code caches of the agent (dist/agent-main.cache, scripts/agent-code-cache.cjs) and of
 * the CLI (dist/cli.cache, scripts/code-cache.mjs) from one real job, so that what a job's path runs
 * is compiled when they are taken, not only the boot: a throwaway server (SQLite in a temporary
 * directory, the local provider, no warm agents, a loopback port) whose agent is
 * scripts/agent-code-cache.cjs, and `hodei run -- true` through it. Both caches are written at
 * their process's clean exit; the build fails, saying why, if either is missing.
 */
async function writeCodeCaches() {
  const dataDir = mkdtempSync(join(tmpdir(), "hodei-build-"));
  const base = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? dataDir, HODEI_DATA_DIR: dataDir };
  const env = { ...base, HODEI_PORT: "0", HODEI_PROVIDERS: "local", HODEI_LOCAL_WARM_WORKERS: "0", HODEI_AGENT_PATH: resolve("scripts/agent-code-cache.cjs") };
  const server = spawn(process.execPath, ["bin/hodei.js", "server"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolveExit) => server.once("exit", resolveExit));
  const output = [];
  try {
    const url = await new Promise((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error("the server did not listen within 60 s")), 60_000);
      for (const stream of [server.stdout, server.stderr]) {
        createInterface({ input: stream }).on("line", (line) => {
          output.push(line);
          if (line.includes('"server listening"')) {
            clearTimeout(timer);
            resolveUrl(JSON.parse(line).url);
          }
        });
      }
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code} before listening`));
      });
    });
    await promisify(execFile)(process.execPath, ["scripts/code-cache.mjs"], { env: { ...base, HODEI_SERVER_URL: url }, timeout: 60_000 });
    // The agent writes its cache as it exits, just after the job's end that `run` waited for.
    for (let waited = 0; !existsSync("dist/agent-main.cache"); waited += 50) {
      if (waited > 30_000) throw new Error("the job's agent did not write dist/agent-main.cache within 30 s of the job's end");
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!existsSync("dist/cli.cache")) throw new Error("`hodei run -- true` did not write dist/cli.cache");
  } catch (err) {
    const said = err.stderr ? `\nhodei run said: ${err.stderr}` : "";
    throw new Error(`writing the code caches failed: ${err.message}${said}\nthe build's server said:\n${output.join("\n")}`);
  } finally {
    server.kill("SIGTERM");
    const killer = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Builds dist/agent.blob, the agent's startup snapshot, with this node, and records which node
 * built it (dist/agent.blob.json): local workers start from it when they run on this same node
 * binary (src/providers/agent-runtime.ts, localSnapshotFor), and run dist/agent.cjs otherwise.
 * Docker and Kubernetes workers get a snapshot of their own, built by the node of their runtime.
 */
async function writeLocalSnapshot() {
  const { buildAgentSnapshot, recordSnapshotNode } = await import(pathToFileURL(resolve("dist/server/docker-image.js")).href);
  await buildAgentSnapshot(process.execPath, resolve("dist/agent-snapshot.cjs"), resolve("dist/agent.blob"));
  await recordSnapshotNode(resolve("dist/agent.blob"), process.execPath);
}

/** The CLI bundle, with its protobuf descriptors decoded here (scripts/embedded-descriptors.mjs). */
async function buildCli() {
  const options = {
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
  };
  const descriptors = await collectDescriptors(build, options);
  await build({ ...options, plugins: [lazyImports, embeddedDescriptors(descriptors)] });
}

rmSync("dist", { recursive: true, force: true });
await Promise.all([
  build({
    entryPoints: ["src/agent/main.ts"],
    outfile: "dist/agent-main.cjs",
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    // When the agent started to run (its boot trace, HODEI_AGENT_BOOT_TRACE): set by dist/agent.cjs
    // before it compiles the bundle, or here when the bundle is run on its own.
    banner: { js: "globalThis.__hodeiEntryMs??=performance.now();" },
    inject: OWN_HEADERS,
    logLevel: "warning",
  }).then(() => {
    copyFileSync("scripts/agent-loader.cjs", "dist/agent.cjs");
    copyFileSync("scripts/agent-snapshot.cjs", "dist/agent-snapshot.cjs");
  }),
  buildCli().then(() => writeFileSync(LAZY_FILE, `${JSON.stringify(lazyKeys())}\n`)),
  build({
    ...node,
    entryPoints: { main: "src/server/main.ts", config: "src/config.ts", "docker-image": "src/providers/docker-image.ts" },
    outdir: "dist/server",
    splitting: true,
    external: serverExternal,
    // The bundled CommonJS packages (prom-client) require Node's built-in modules.
    banner: { js: 'import { createRequire as __hodeiCreateRequire } from "node:module"; const require = __hodeiCreateRequire(import.meta.url);' },
    sourcemap: true,
  }),
  build({ ...node, entryPoints: { client: "src/client/index.ts" }, outdir: "dist", packages: "external", sourcemap: true }),
  promisify(execFile)(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.client.json"]).catch((err) => {
    throw new Error(`tsc -p tsconfig.client.json failed:\n${err.stdout}${err.stderr}`);
  }),
  buildDashboard({ configFile: "dashboard/vite.config.ts" }),
]);
await writeCodeCaches();
await writeLocalSnapshot();
