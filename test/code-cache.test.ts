/**
 * The build's V8 code caches (dist/cli.cache for the CLI, dist/agent-main.cache for the agent) are
 * accepted by this node: a cache V8 rejected would cost every start a compile, and nothing else
 * would show it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
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

  it("leave an agent.cjs copied without its bundle saying so in one line, exit code 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-lonely-agent-"));
    try {
      copyFileSync(join(ROOT, "dist", "agent.cjs"), join(dir, "agent.cjs"));
      const run = spawnSync(process.execPath, [join(dir, "agent.cjs")], { input: "", env: { PATH: process.env.PATH, HODEI_SERVER_URL: "http://127.0.0.1:9" }, encoding: "utf8" });
      assert.equal(run.status, 2);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, run.stderr);
      assert.equal(JSON.parse(lines[0]).error, `the agent's bundle ${join(dir, "agent-main.cjs")} cannot be read (ENOENT): agent.cjs runs the agent-main.cjs beside it; copy both (and agent-main.cache), or run npm run build`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("are not used when asked not to (the check above can fail)", () => {
    assert.equal(compileCli({ useCache: false }).cachedDataRejected, undefined);
    assert.equal(agentLoader.compile({ useCache: false }).cachedDataRejected, undefined);
  });
});
