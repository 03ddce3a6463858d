/**
 * The warm agent's throwaway spawn (warmUpSpawn): it starts and reaps one `sh -c :`, and without a
 * shell it neither throws nor ends the agent. Each case runs in a process of its own, whose
 * children are then read from /proc. And a job's command that the system refuses to start.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startCommand } from "./command.js";

const COMMAND = new URL("./command.ts", import.meta.url).href;
const CONFIG = new URL("./config.ts", import.meta.url).href;

/** Runs warmUpSpawn in a child node with PATH as given (and more environment, if given); it prints, 300 ms later, its remaining children. */
function runWarmUp(path: string, env: Record<string, string> = {}) {
  const script = `
    const { warmUpSpawn } = await import(${JSON.stringify(COMMAND)});
    const { readAgentConfig } = await import(${JSON.stringify(CONFIG)});
    const fs = await import("node:fs");
    // As the agent's main does: the environment a job would get.
    warmUpSpawn(readAgentConfig(process.env).baseEnv);
    const started = fs.readFileSync("/proc/self/task/" + process.pid + "/children", "utf8").trim();
    setTimeout(() => {
      const left = fs.readFileSync("/proc/self/task/" + process.pid + "/children", "utf8").trim();
      process.stdout.write(JSON.stringify({ started, left }));
    }, 300);`;
  return spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    env: { HODEI_SERVER_URL: "http://127.0.0.1:9", ...env, PATH: path, HOME: process.env.HOME },
    encoding: "utf8",
    // The child's node and tsx are found by absolute path: PATH is the case under test.
    cwd: process.cwd(),
  });
}

describe("warmUpSpawn", () => {
  it("starts one shell that exits and is reaped", { skip: process.platform !== "linux" && "reads /proc" }, () => {
    const run = runWarmUp(process.env.PATH ?? "/usr/bin:/bin");
    assert.equal(run.status, 0, run.stderr);
    const { started, left } = JSON.parse(run.stdout) as { started: string; left: string };
    assert.match(started, /^\d+$/, "one child right after the call");
    assert.equal(left, "", "no child left 300 ms later");
  });

  it("gives the shell a job's environment, not the agent's markers (else it shows as one more agent in the local provider's scans)", { skip: process.platform !== "linux" && "reads /proc" }, () => {
    // A `sh` of our own, found first on PATH, writes the environment it got.
    const dir = mkdtempSync(join(tmpdir(), "hodei-warm-sh-"));
    try {
      const seen = join(dir, "environment");
      writeFileSync(join(dir, "sh"), `#!/bin/sh\nenv > ${seen}\n`, { mode: 0o755 });
      const run = runWarmUp(`${dir}:${process.env.PATH ?? "/usr/bin:/bin"}`, { HODEI_CLUSTER_ID: "c1", HODEI_WARM_ID: "w1", HODEI_MANAGED_BY: "hodei" });
      assert.equal(run.status, 0, run.stderr);
      const environment = readFileSync(seen, "utf8");
      assert.match(environment, /^PATH=/m);
      assert.doesNotMatch(environment, /HODEI_/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("without a shell to start, neither throws nor ends the agent", { skip: process.platform !== "linux" && "reads /proc" }, () => {
    const run = runWarmUp("/nonexistent");
    assert.equal(run.status, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as { left: string }).left, "");
  });
});

describe("startCommand", () => {
  it("fails a command the system refuses to exec (an argument over MAX_ARG_STRLEN: E2BIG) with the reason, without throwing", async () => {
    const workDir = mkdtempSync(join(tmpdir(), "hodei-command-"));
    try {
      const output: string[] = [];
      const running = startCommand({ command: [`: ${"x".repeat(200 * 1024)}`], script: "", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, workDir, timeoutSeconds: 10 }, (_s, d) => output.push(d.toString()));
      assert.equal(running.pid, undefined);
      const outcome = await running.done;
      assert.equal(outcome.exitCode, -1);
      assert.match(outcome.error, /^could not start the command: .*E2BIG/);
      assert.deepEqual(output, []);
      // The same call with an argument Linux accepts runs.
      const ok = await startCommand({ command: [`: ${"x".repeat(1024)}`], script: "", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, workDir, timeoutSeconds: 10 }, () => {}).done;
      assert.deepEqual([ok.exitCode, ok.error], [0, ""]);
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});
