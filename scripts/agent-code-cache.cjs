// Writes dist/agent-main.cache, V8's code cache of the agent's bundle that dist/agent.cjs hands to
// V8. Run by the build with an assignment on stdin and a control plane address where nothing
// listens: the agent loads, reads the assignment and tries to register, so its boot path is
// compiled too; it gives up at once (HODEI_REGISTER_TIMEOUT_MS) and the compiled code is saved.
"use strict";
const { writeFileSync } = require("node:fs");
const { join } = require("node:path");
const { load, CACHE } = require(join(process.cwd(), "dist", "agent.cjs"));

const script = load({ useCache: false });
process.on("exit", () => {
  writeFileSync(CACHE, script.createCachedData());
  process.exitCode = 0;
});
