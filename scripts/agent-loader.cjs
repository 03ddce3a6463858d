// dist/agent.cjs, what every worker runs: starts the agent's bundle (agent-main.cjs beside it)
// through vm.Script with V8's code cache of it (agent-main.cache, written by the build:
// scripts/agent-code-cache.cjs), so V8 need not compile the bundle on every start. A cache that
// does not match this node (another version, other V8 flags) or is missing is ignored and V8
// compiles. Required rather than run (the build does, to write the cache), it only exports compile
// and load.
"use strict";
globalThis.__hodeiEntryMs = performance.now();
const { readFileSync } = require("node:fs");
const { createRequire } = require("node:module");
const { join } = require("node:path");
const vm = require("node:vm");

const MAIN = join(__dirname, "agent-main.cjs");
const CACHE = join(__dirname, "agent-main.cache");

/** The bundle compiled, with the code cache unless useCache is false; script.cachedDataRejected says whether V8 took it. */
function compile({ useCache = true } = {}) {
  let cachedData;
  if (useCache) {
    try {
      cachedData = readFileSync(CACHE);
    } catch {
      cachedData = undefined;
    }
  }
  let bundle;
  try {
    bundle = readFileSync(MAIN, "utf8");
  } catch (err) {
    const message = `the agent's bundle ${MAIN} cannot be read (${err.code ?? err.message}): agent.cjs runs the agent-main.cjs beside it; copy both (and agent-main.cache), or run npm run build`;
    if (require.main !== module) throw new Error(message, { cause: err });
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg: "agent failed to start", error: message })}\n`);
    process.exit(2);
  }
  const source = `(function (exports, require, module, __filename, __dirname) {${bundle}\n})`;
  return new vm.Script(source, { filename: MAIN, cachedData });
}

/** Compiles and runs the bundle; returns its script (for createCachedData). */
function load(options) {
  const script = compile(options);
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(MAIN), mod, MAIN, __dirname);
  return script;
}

module.exports = { compile, load, MAIN, CACHE };
if (require.main === module) load();
