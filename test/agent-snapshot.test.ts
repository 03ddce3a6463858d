/**
 * The agent's startup snapshots (agent.blob, built by src/providers/agent-runtime.ts from
 * scripts/agent-snapshot.cjs), on this host without Docker: a worker started from an agent
 * runtime's runs the agent's main at once and reads its own environment, not the builder's; an
 * agent of one's own (no bundle beside it) still runs; a bundle that does not hand its main over
 * fails the assembly. The build's (dist/agent.blob) is used by local workers only on the node that
 * built it, and a local job's agent runs from it. The worker image is in src/providers/docker.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { assembleAgentRuntime, localSnapshotFor, recordSnapshotNode } from "../src/providers/agent-runtime.js";
import { ROOT, runCli, startServerProcess, stopLeavingNothing } from "./e2e/harness.js";
import { tempDir } from "./fixtures/temp-dir.js";

const SNAPSHOT_ENTRY = join(ROOT, "dist", "agent-snapshot.cjs");

/** Runs node from the runtime's snapshot, as AGENT_COMMAND does (without the loader: this host's libraries are the runtime's). */
function runFromSnapshot(runtimeDir: string, env: Record<string, string>) {
  return spawnSync(join(runtimeDir, "bin", "node"), ["--snapshot-blob", join(runtimeDir, "agent.blob")], {
    input: "",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
}

describe("the agent's startup snapshot", () => {
  it("starts the agent's main at once, with the worker's own environment", async () => {
    const runtime = await assembleAgentRuntime({ targetDir: join(tempDir("hodei-snapshot-"), "rt"), nodePath: process.execPath, agentPath: join(ROOT, "dist", "agent.cjs") });
    // Nothing listens on port 1; the builder had no HODEI_SERVER_URL at all.
    const env = { HODEI_SERVER_URL: "http://127.0.0.1:1", HODEI_AGENT_BOOT_TRACE: "1", HODEI_REGISTER_TIMEOUT_MS: "200" };
    const assignment = { HODEI_OTP_TOKEN: "hodei_otp_x", HODEI_WORKER_ID: "w", HODEI_WORKER_NAME: "hodei-worker-w", HODEI_JOB_ID: "j", HODEI_WORK_DIR: tempDir("hodei-snapshot-work-") };
    const run = runFromSnapshot(runtime.dir, { ...env, ...assignment });
    assert.equal(run.status, 1, run.stderr);
    const lines = run.stderr.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const boot = lines.find((l) => l.msg === "boot phases (ms since the process started)");
    assert.ok(boot, run.stderr);
    assert.equal(boot.snapshot, 1, "started from the snapshot");
    assert.equal(boot.entry, boot.loaded, "no module evaluated after the start");
    assert.match(String(lines.at(-1)?.error), /^register with http:\/\/127\.0\.0\.1:1 failed: .*ECONNREFUSED/);

    const misconfigured = runFromSnapshot(runtime.dir, {});
    assert.equal(misconfigured.status, 2);
    assert.match(misconfigured.stderr, /HODEI_SERVER_URL is not set/);
  });

  it("runs an agent of one's own, with no bundle beside it, from the agent.cjs beside the blob", async () => {
    const dir = tempDir("hodei-snapshot-own-");
    writeFileSync(join(dir, "agent.cjs"), 'console.log("own agent", process.env.HODEI_SERVER_URL);\n');
    const runtime = await assembleAgentRuntime({ targetDir: join(dir, "rt"), nodePath: process.execPath, agentPath: join(dir, "agent.cjs"), snapshotEntryPath: SNAPSHOT_ENTRY });
    const run = runFromSnapshot(runtime.dir, { HODEI_SERVER_URL: "http://127.0.0.1:2" });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, "own agent http://127.0.0.1:2\n");
  });

  it("refuses a bundle that does not hand its main to the snapshot, saying so", async () => {
    const dir = tempDir("hodei-snapshot-bad-");
    mkdirSync(join(dir, "agent"));
    writeFileSync(join(dir, "agent", "agent.cjs"), 'require("./agent-main.cjs");\n');
    writeFileSync(join(dir, "agent", "agent-main.cjs"), 'console.log("runs at once");\n');
    await assert.rejects(
      assembleAgentRuntime({ targetDir: join(dir, "rt"), nodePath: process.execPath, agentPath: join(dir, "agent", "agent.cjs"), snapshotEntryPath: SNAPSHOT_ENTRY }),
      /building the agent's startup snapshot with .* failed: [\s\S]*did not hand its main to the snapshot/,
    );
  });

  it("is rebuilt when its node binary changes, and only then (node is known by identity, not read whole)", async () => {
    const dir = tempDir("hodei-snapshot-rebuild-");
    const node = join(dir, "node");
    copyFileSync(process.execPath, node);
    chmodSync(node, 0o755);
    const options = { targetDir: join(dir, "rt"), nodePath: node, agentPath: join(ROOT, "dist", "agent.cjs") };
    const first = await assembleAgentRuntime(options);
    const builtAt = statSync(join(first.dir, "agent.blob")).mtimeMs;
    const again = await assembleAgentRuntime(options);
    assert.equal(again.hash, first.hash);
    assert.equal(statSync(join(again.dir, "agent.blob")).mtimeMs, builtAt, "an up-to-date runtime is left as it is");
    // The same binary rewritten in place (a package upgrade of the same size would do this): rebuilt.
    const later = new Date(Date.now() + 5000);
    utimesSync(node, later, later);
    const rebuilt = await assembleAgentRuntime(options);
    assert.notEqual(rebuilt.hash, first.hash);
    assert.notEqual(statSync(join(rebuilt.dir, "agent.blob")).mtimeMs, builtAt);
  });

  it("is used by local workers only on the node that built it (dist/agent.blob and its record)", async () => {
    const dist = join(ROOT, "dist");
    assert.equal(localSnapshotFor(join(dist, "agent.cjs"), process.execPath), join(dist, "agent.blob"), "npm run build made it with this node");
    // The same bytes at another path are another binary as far as the record goes: not used.
    const dir = tempDir("hodei-snapshot-node-");
    const otherNode = join(dir, "node");
    copyFileSync(process.execPath, otherNode);
    assert.equal(localSnapshotFor(join(dist, "agent.cjs"), otherNode), undefined);
    // An agent with no blob beside it (tests' own agents, HODEI_AGENT_PATH) runs as it is.
    writeFileSync(join(dir, "agent.cjs"), "\n");
    assert.equal(localSnapshotFor(join(dir, "agent.cjs"), process.execPath), undefined);
    // A blob whose record names this node is taken; a record of another node is not.
    writeFileSync(join(dir, "agent.blob"), "not read here");
    await recordSnapshotNode(join(dir, "agent.blob"), process.execPath);
    assert.equal(localSnapshotFor(join(dir, "agent.cjs"), process.execPath), join(dir, "agent.blob"));
    await recordSnapshotNode(join(dir, "agent.blob"), otherNode);
    assert.equal(localSnapshotFor(join(dir, "agent.cjs"), process.execPath), undefined);
  });

  it("starts a local job's agent from the build's snapshot", async () => {
    const server = await startServerProcess({ HODEI_LOCAL_WARM_WORKERS: "0" });
    try {
      // HODEI_WORKER_PID is the agent's pid (a marker every process of the job carries).
      const result = await runCli(server, ["run", "--", "sh", "-c", 'tr "\\0" " " < /proc/$HODEI_WORKER_PID/cmdline']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), `${process.execPath} --snapshot-blob ${join(ROOT, "dist", "agent.blob")}`);
    } finally {
      await stopLeavingNothing(server);
    }
  });
});
