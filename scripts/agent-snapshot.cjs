// dist/agent-snapshot.cjs: the entry of a worker's startup snapshot (agent.blob in the agent
// runtime, src/providers/agent-runtime.ts). The runtime's own node builds it, in two runs:
//   node agent-snapshot.cjs --lazy-keys                                 (prints LAZY's property names)
//   HODEI_SNAPSHOT_LAZY_KEYS=<that> node --snapshot-blob agent.blob --build-snapshot agent-snapshot.cjs
// and a worker starts with `node --snapshot-blob agent.blob`: the agent's bundle (agent-main.cjs
// beside this file) is then already evaluated, and its main runs at once (about 30 ms of module
// evaluation saved per cold worker, measured with bench/agent-boot.ts).
//
// Gotchas of Node 20's snapshots, and what is done about them:
// - node:http, node:https, node:http2 (and node:tls under them) cannot be loaded while a snapshot is
//   built, and node:child_process is "not verified": the bundle gets a stand-in for each that loads
//   the real module on first use, in the worker. esbuild's interop copies a module's property names
//   when the bundle loads, so a stand-in lists the real ones, read by the same node (--lazy-keys).
// - Functions that ran while the snapshot was built keep their bytecode in it; the rest are compiled
//   in every worker. So the bundle's warm-up (src/agent/warm-up.ts) runs here, once, to its end:
//   Node drains the event loop before it takes the snapshot.
// - Nothing of the builder's environment may matter in a worker: process.env, argv and the clocks
//   are the worker's after deserialization; the bundle reads them only in main().
// Without agent-main.cjs beside this file (an agent of one's own, as tests use), the snapshot holds
// no agent, and its main runs the agent.cjs beside the blob.
"use strict";
const LAZY = ["node:http", "node:https", "node:http2", "node:child_process"];

if (process.argv.includes("--lazy-keys")) {
  // A plain run (no snapshot being built): these modules load.
  process.stdout.write(JSON.stringify(Object.fromEntries(LAZY.map((name) => [name, Object.getOwnPropertyNames(require(name))]))));
} else {
  buildSnapshot();
}

function buildSnapshot() {
  const v8 = require("node:v8");
  const { existsSync, readFileSync } = require("node:fs");
  const { dirname, join } = require("node:path");
  if (!v8.startupSnapshot.isBuildingSnapshot()) {
    throw new Error("agent-snapshot.cjs builds a startup snapshot: run it with node --snapshot-blob <file> --build-snapshot, or with --lazy-keys");
  }
  const bundlePath = join(__dirname, "agent-main.cjs");
  if (!existsSync(bundlePath)) {
    v8.startupSnapshot.setDeserializeMainFunction(() => {
      const blob = process.execArgv[process.execArgv.indexOf("--snapshot-blob") + 1];
      const agent = join(dirname(blob), "agent.cjs");
      require("node:module").createRequire(agent)(agent);
    });
    return;
  }
  const lazyKeys = JSON.parse(process.env.HODEI_SNAPSHOT_LAZY_KEYS || "null");
  if (!lazyKeys) throw new Error("HODEI_SNAPSHOT_LAZY_KEYS is not set: pass the output of `node agent-snapshot.cjs --lazy-keys`");
  const standIns = new Map(LAZY.map((name) => [name, standIn(name, lazyKeys[name])]));
  const bundleRequire = (name) => standIns.get(name) ?? require(name);
  let run = null;
  // The bundle hands its main (and warm-up) here instead of running main (src/agent/main.ts).
  globalThis.__hodeiSnapshot = {
    setMain(main, warmUp) {
      run = main;
      // Node takes the snapshot once the event loop is empty, so an asynchronous warm-up completes
      // first; one that fails fails the build.
      let isWarm = false;
      Promise.resolve(warmUp()).then(
        () => (isWarm = true),
        (err) => {
          process.stderr.write(`the agent's warm-up failed: ${err && err.stack ? err.stack : err}\n`);
          process.exit(1);
        },
      );
      v8.startupSnapshot.addSerializeCallback(() => {
        if (!isWarm) {
          process.stderr.write("the agent's warm-up never finished (a promise nothing settles); no snapshot is written\n");
          process.exit(1);
        }
      });
    },
  };
  const mod = { exports: {} };
  // A function of the bundle's source, as a CommonJS module body.
  new Function("exports", "require", "module", "__filename", "__dirname", readFileSync(bundlePath, "utf8"))(mod.exports, bundleRequire, mod, bundlePath, __dirname);
  delete globalThis.__hodeiSnapshot;
  if (!run) throw new Error(`${bundlePath} did not hand its main to the snapshot (globalThis.__hodeiSnapshot.setMain)`);
  v8.startupSnapshot.setDeserializeMainFunction(() => run());
}

/** An object that stands for the built-in module name and loads it on first use of a property. */
function standIn(name, keys) {
  if (!Array.isArray(keys)) throw new Error(`HODEI_SNAPSHOT_LAZY_KEYS lists no property names for ${name}`);
  let real = null;
  const load = () => (real ??= require(name));
  return new Proxy(
    {},
    {
      get: (_, key) => load()[key],
      has: (_, key) => keys.includes(key),
      ownKeys: () => keys,
      // Configurable, on an extensible target: the value is never read from here (esbuild's interop
      // defines a getter that goes through get above).
      getOwnPropertyDescriptor: (_, key) => (keys.includes(key) ? { configurable: true, enumerable: true, writable: true, value: undefined } : undefined),
    },
  );
}
