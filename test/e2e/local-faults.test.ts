/**
 * Faults and limits on the local provider: the control plane killed mid-job and restarted,
 * a worker lost while the control plane is down, the leader killed and started again (it leads at
 * once), and a job that prints 50 MB.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { eventually, type JobJson, jobWhen, jsonCli, killCluster, leftoverProcesses, runCli, type ServerProcess, sleep, startServerProcess, workerProcesses } from "./harness.js";


/** Peak resident memory of a process, in MB. */
function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

describe("the control plane killed with SIGKILL mid-job", () => {
  it("converges after a restart: the job finishes with every log line and no process is left", async () => {
    const first = await startServerProcess();
    const { clusterId, dataDir, port } = first;
    let second: ServerProcess | undefined;
    try {
      const id = (await runCli(first, ["run", "--detach", "--", "for i in $(seq 1 8); do echo tick $i; sleep 0.4; done"])).stdout.trim();
      await eventually(async () => (await runCli(first, ["logs", id])).stdout.includes("tick 2"));
      await first.kill();
      assert.ok(workerProcesses(clusterId, dataDir).length > 0, "the worker outlives the control plane");
      await sleep(500);
      second = await startServerProcess({}, { dataDir, clusterId, port });
      const job = await jobWhen(second, id, (j) => Boolean(j.timeline.destroyed));
      assert.equal(job.state, "succeeded", job.reason);
      const logs = await runCli(second, ["logs", id]);
      assert.equal(logs.stdout, Array.from({ length: 8 }, (_, i) => `tick ${i + 1}\n`).join(""));
      assert.deepEqual(await leftoverProcesses(second!), []);
    } finally {
      killCluster(clusterId);
      await first.kill();
      await second?.stop();
      first.cleanup();
    }
  });

  it("fails the job clearly when its worker died while the control plane was down", async () => {
    const first = await startServerProcess({ HODEI_HEARTBEAT_TIMEOUT_MS: "3000" });
    const { clusterId, dataDir, port } = first;
    let second: ServerProcess | undefined;
    try {
      const id = (await runCli(first, ["run", "--detach", "--", "echo started; sleep 300"])).stdout.trim();
      await eventually(async () => (await runCli(first, ["logs", id])).stdout.includes("started"));
      await first.kill();
      for (const p of workerProcesses(clusterId, dataDir)) process.kill(p.pid, "SIGKILL");
      second = await startServerProcess({ HODEI_HEARTBEAT_TIMEOUT_MS: "3000" }, { dataDir, clusterId, port });
      const job = await jobWhen(second, id, (j) => Boolean(j.timeline.destroyed));
      assert.equal(job.state, "failed");
      assert.match(job.reason, /disappeared|killed|heartbeat/);
      assert.equal(job.logsIncomplete, true, "the logs are marked incomplete");
      assert.deepEqual(await leftoverProcesses(second!), []);
    } finally {
      killCluster(clusterId);
      await first.kill();
      await second?.stop();
      first.cleanup();
    }
  });
});

describe("the leader killed with SIGKILL and started again on the same machine", () => {
  it("leads at once, without waiting out its old lease: the old process is provably gone", async () => {
    // A lease far longer than the test may wait: leading within it proves the takeover.
    const env = { HODEI_LEADER_LEASE_MS: "300000", HODEI_LOCAL_MAX_WORKERS: "1" };
    const first = await startServerProcess(env);
    const { clusterId, dataDir, port } = first;
    let second: ServerProcess | undefined;
    try {
      await eventually(() => first.output.some((line) => line.includes('"this replica is the leader"')));
      await first.kill();
      second = await startServerProcess(env, { dataDir, clusterId, port });
      const restarted = second;
      await eventually(() => restarted.output.some((line) => line.includes('"this replica is the leader"')), 30_000);
      const takeover = restarted.output.find((line) => line.includes("the leader's process is gone from this machine"));
      assert.ok(takeover, "it says why it took the lease before its expiry");
      // A leader step runs: with the one slot taken, a job past its queue timeout is ended by the
      // queue-deadlines step, which only the leader runs.
      const busy = (await runCli(restarted, ["run", "--detach", "--", "sleep 60"])).stdout.trim();
      await jobWhen(restarted, busy, (j) => j.state === "running", 30_000);
      const waiting = (await runCli(restarted, ["run", "--detach", "--queue-timeout", "1", "--", "true"])).stdout.trim();
      const job = await jobWhen(restarted, waiting, (j) => j.state === "timed_out", 30_000);
      assert.match(job.reason, /never started/);
      await runCli(restarted, ["cancel", busy]);
      await jobWhen(restarted, busy, (j) => Boolean(j.timeline.destroyed), 30_000);
      assert.deepEqual(await leftoverProcesses(restarted), []);
    } finally {
      killCluster(clusterId);
      await first.kill();
      await second?.stop();
      first.cleanup();
    }
  });
});

describe("a job that prints 50 MB", () => {
  const FIFTY_MB = 50 * 1024 * 1024;
  const PRINT_50MB = `head -c ${FIFTY_MB} /dev/zero | tr '\\0' 'x' | fold -w 1023`;

  it("streams all of it through the server with bounded memory", async () => {
    const server = await startServerProcess({ HODEI_LOG_LIMIT_BYTES: String(64 * 1024 * 1024) });
    try {
      const id = (await runCli(server, ["run", "--detach", "--", PRINT_50MB])).stdout.trim();
      const job = await jobWhen(server, id, (j) => Boolean(j.timeline.destroyed), 120_000);
      assert.equal(job.state, "succeeded", job.reason);
      assert.equal(job.logsTruncated, false);
      const peak = peakRssMb(server.process.pid!);
      const logs = await runCli(server, ["logs", id], { timeoutMs: 120_000 });
      assert.equal(logs.stdout.replaceAll("\n", "").length, FIFTY_MB, "every byte was stored");
      console.log(`# server peak RSS while streaming 50 MB: ${peak.toFixed(0)} MB`);
      assert.ok(peak < 300, `server peak RSS ${peak.toFixed(0)} MB should stay bounded`);
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });

  it("cuts output past the limit with a visible marker", async () => {
    const server = await startServerProcess({ HODEI_LOG_LIMIT_BYTES: String(1024 * 1024) });
    try {
      const result = await runCli(server, ["run", "--", `${PRINT_50MB}; echo done-after-output`], { timeoutMs: 120_000 });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /output truncated/);
      assert.ok(result.stdout.length <= 1024 * 1024 + 2048, `printed ${result.stdout.length} bytes`);
      assert.doesNotMatch(result.stdout, /done-after-output/);
      const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
      assert.equal(job.logsTruncated, true);
      assert.equal(job.state, "succeeded");
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });
});
