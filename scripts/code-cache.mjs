// Writes dist/cli.cache, V8's code cache of the CLI bundle that bin/load-cli.js hands to V8: runs
// the bundle once as bin/hodei.js does (a `run` against an address where nothing listens, so that
// the option parsing and the client's request path are compiled too) and saves the compiled code.
import { writeFileSync } from "node:fs";
import { CACHE_FILE, loadCli } from "../bin/load-cli.js";

process.argv = [process.execPath, "hodei", "--server", "http://127.0.0.1:9", "--token", "none", "run", "--", "true"];
const script = loadCli({ useCache: false });
process.on("exit", () => {
  writeFileSync(CACHE_FILE, script.createCachedData());
  process.exitCode = 0;
});
