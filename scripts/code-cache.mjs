// Writes dist/cli.cache, V8's code cache of the CLI bundle that bin/load-cli.js hands to V8: runs
// the bundle once as bin/hodei.js does, `hodei run -- true` against the build's throwaway server
// (HODEI_SERVER_URL and HODEI_DATA_DIR, from scripts/build.mjs), so that option parsing, the
// request, following the job and printing its end are compiled too, and saves the compiled code
// after a clean exit.
import { writeFileSync } from "node:fs";
import { CACHE_FILE, loadCli } from "../bin/load-cli.js";

process.argv = [process.execPath, "hodei", "run", "--", "true"];
const script = loadCli({ useCache: false });
process.on("exit", (code) => {
  if (code === 0) writeFileSync(CACHE_FILE, script.createCachedData());
});
