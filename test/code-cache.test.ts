/**
 * The build's V8 code caches (dist/cli.cache for the CLI, dist/agent-main.cache for the agent) are
 * accepted by this node: a cache V8 rejected would cost every start a compile, and nothing else
 * would show it.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, it } from "node:test";
import { compileCli } from "../bin/load-cli.js";
import { ROOT } from "./e2e/harness.js";

const agentLoader = createRequire(import.meta.url)(join(ROOT, "dist", "agent.cjs")) as {
  compile(options?: { useCache?: boolean }): import("node:vm").Script;
};

describe("the build's code caches", () => {
  it("are taken by V8 for the CLI and for the agent", () => {
    assert.equal(compileCli().cachedDataRejected, false, "dist/cli.cache");
    assert.equal(agentLoader.compile().cachedDataRejected, false, "dist/agent-main.cache");
  });

  it("are not used when asked not to (the check above can fail)", () => {
    assert.equal(compileCli({ useCache: false }).cachedDataRejected, undefined);
    assert.equal(agentLoader.compile({ useCache: false }).cachedDataRejected, undefined);
  });
});
