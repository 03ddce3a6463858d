// Runs the CLI bundle (dist/cli.cjs, CommonJS) through vm.Script with V8's code cache of it
// (dist/cli.cache, written by the build), so V8 need not compile the bundle on every start: Node 20
// has no module compile cache. A cache that does not match (another Node, other V8 flags) or is
// missing is ignored and V8 compiles. The bundle's lazy imports (the server, the image build) go
// through `__hodeiImport`, since Node 20 loses a script's dynamic import() with a code cache.
//
// The built-in modules in LAZY (HTTP, HTTP/2, TLS, child processes: 10 to 20 ms of loading, which
// most commands never use) are handed to the bundle as stand-ins that load the real module at the
// first use of one of its properties. esbuild's interop copies a module's property names when the
// bundle loads, so a stand-in lists the real names, recorded by the build (dist/cli-lazy.json) with
// the Node version that read them; under another version every module loads at once, as usual.
"use strict";
const { readFileSync } = require("node:fs");
const { createRequire } = require("node:module");
const { join } = require("node:path");
const { pathToFileURL } = require("node:url");
const vm = require("node:vm");

const DIST = join(__dirname, "..", "dist");
const CLI_FILE = join(DIST, "cli.cjs");
const CACHE_FILE = join(DIST, "cli.cache");
const LAZY_FILE = join(DIST, "cli-lazy.json");
const LAZY = ["node:http", "node:https", "node:http2", "node:child_process"];

/** The bundle compiled, with the code cache unless useCache is false; script.cachedDataRejected says whether V8 took it. */
function compileCli({ useCache = true } = {}) {
  let cachedData;
  if (useCache) {
    try {
      cachedData = readFileSync(CACHE_FILE);
    } catch {
      cachedData = undefined;
    }
  }
  const source = `(function (exports, require, module, __filename, __dirname, __hodeiImport) {${readFileSync(CLI_FILE, "utf8")}\n})`;
  return new vm.Script(source, { filename: CLI_FILE, cachedData });
}

/** The property names of the LAZY modules under this Node version: what the build writes to dist/cli-lazy.json. */
function lazyKeys() {
  return { node: process.version, keys: Object.fromEntries(LAZY.map((name) => [name, Object.getOwnPropertyNames(require(name))])) };
}

/** The bundle's require: stand-ins for the LAZY modules when dist/cli-lazy.json was written by this Node version. */
function bundleRequire() {
  const real = createRequire(CLI_FILE);
  let recorded = null;
  try {
    recorded = JSON.parse(readFileSync(LAZY_FILE, "utf8"));
  } catch {
    recorded = null;
  }
  if (recorded?.node !== process.version) return real;
  const standIns = new Map();
  for (const name of LAZY) {
    const keys = recorded.keys?.[name];
    if (Array.isArray(keys)) standIns.set(name, standIn(() => real(name), keys));
  }
  const lazyRequire = (name) => standIns.get(name) ?? real(name);
  return Object.assign(lazyRequire, { resolve: real.resolve, cache: real.cache });
}

/** An object that stands for a module (load() gives it) and loads it at the first read of a property. */
function standIn(load, keys) {
  let module = null;
  const names = new Set(keys);
  return new Proxy(
    {},
    {
      // No built-in module has __esModule: asking it (interop code does) need not load the module.
      get: (_, key) => (key === "__esModule" ? undefined : (module ??= load())[key]),
      has: (_, key) => names.has(key),
      ownKeys: () => [...names],
      // Configurable, on an extensible target: esbuild's interop reads only `enumerable` here and
      // defines a getter that goes through get above.
      getOwnPropertyDescriptor: (_, key) => (names.has(key) ? { configurable: true, enumerable: true, writable: true, value: undefined } : undefined),
    },
  );
}

/** Compiles and runs the bundle (it runs the command line in process.argv); returns its script. */
function loadCli(options) {
  const script = compileCli(options);
  const module = { exports: {} };
  const hodeiImport = (specifier) => import(specifier.startsWith("./") ? pathToFileURL(join(DIST, specifier)).href : specifier);
  script.runInThisContext()(module.exports, bundleRequire(), module, CLI_FILE, DIST, hodeiImport);
  return script;
}

module.exports = { CLI_FILE, CACHE_FILE, LAZY_FILE, compileCli, lazyKeys, loadCli, standIn };
