// Writes dist/agent-main.cache, V8's code cache of the agent's bundle that dist/agent.cjs hands to
// V8. The build's throwaway server (scripts/build.mjs, writeCodeCaches) runs this file as its local
// provider's agent (HODEI_AGENT_PATH) for one real job: the agent boots, registers, runs the
// command, streams its output and reports the result, so every function on a job's path is compiled
// when the cache is taken, at the agent's exit. Written only after a clean exit (the job went
// through), by rename, so a reader never sees half a file.
"use strict";
const { renameSync, writeFileSync } = require("node:fs");
const { join } = require("node:path");
const { load, CACHE } = require(join(__dirname, "..", "dist", "agent.cjs"));

const script = load({ useCache: false });
process.on("exit", (code) => {
  if (code !== 0) return;
  writeFileSync(`${CACHE}.tmp`, script.createCachedData());
  renameSync(`${CACHE}.tmp`, CACHE);
});
