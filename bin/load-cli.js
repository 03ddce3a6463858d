// Runs the CLI bundle (dist/cli.cjs, CommonJS) through vm.Script with V8's code cache of it
// (dist/cli.cache, written by the build), so V8 need not compile the bundle on every start: Node 20
// has no module compile cache. A cache that does not match (another Node, other V8 flags) or is
// missing is ignored and V8 compiles. The bundle's lazy imports (the server, the image build) go
// through `__hodeiImport`, since Node 20 loses a script's dynamic import() with a code cache.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const DIST = new URL("../dist/", import.meta.url);
export const CLI_FILE = fileURLToPath(new URL("cli.cjs", DIST));
export const CACHE_FILE = fileURLToPath(new URL("cli.cache", DIST));

/** The bundle compiled, with the code cache unless useCache is false; script.cachedDataRejected says whether V8 took it. */
export function compileCli({ useCache = true } = {}) {
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

/** Compiles and runs the bundle (it runs the command line in process.argv); returns its script. */
export function loadCli(options) {
  const script = compileCli(options);
  const module = { exports: {} };
  const hodeiImport = (specifier) => import(specifier.startsWith("./") ? new URL(specifier, DIST).href : specifier);
  script.runInThisContext()(module.exports, createRequire(CLI_FILE), module, CLI_FILE, fileURLToPath(DIST), hodeiImport);
  return script;
}
