/**
 * The worker protocol end to end on the local provider: output that is not UTF-8 comes back byte
 * for byte, an agent stopped from outside does not blame the job, and a control plane killed while
 * a worker registers does not cost the job its only attempt. Each test proves no process is left.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  eventually,
  HODEI_BIN,
  type JobJson,
  jobWhen,
  jsonCli,
  killCluster,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  sleep,
  startServerProcess,
  type WorkerJson,
} from "./harness.js";

/** Runs `hodei ARGS` and keeps its stdout as bytes. */
function runCliBytes(server: { url: string; dataDir: string }, args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HODEI_BIN, ...args], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", NO_COLOR: "1", HODEI_SERVER_URL: server.url, HODEI_DATA_DIR: server.dataDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`hodei ${args.join(" ")} did not finish in time: ${stderr}`));
    }, 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

/** The .agent.log of every worker directory of the server (the agents' own log lines). */
function agentLogs(dataDir: string): string {
  const root = join(dataDir, "work");
  if (!existsSync(root)) return "";
  return readdirSync(root)
    .map((name) => join(root, name, ".agent.log"))
    .filter((file) => existsSync(file))
    .map((file) => readFileSync(file, "utf8"))
    .join("");
}

describe("the worker protocol on the local provider", () => {
  it("returns output that is not UTF-8 byte for byte, through run and logs", async () => {
    const server = await startServerProcess();
    try {
      const run = await runCliBytes(server, ["run", "--", "printf 'A\\377\\376B'"]);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual([...run.stdout], [0x41, 0xff, 0xfe, 0x42]);
      const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
      const logs = await runCliBytes(server, ["logs", job.id]);
      assert.equal(logs.code, 0, logs.stderr);
      assert.deepEqual([...logs.stdout], [0x41, 0xff, 0xfe, 0x42]);
      const json = await runCli(server, ["logs", job.id, "--json"]);
      assert.equal(Buffer.from(JSON.parse(json.stdout).data as string, "base64").toString("hex"), "41fffe42", "JSON carries the bytes as base64");
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });

  it("an agent stopped with SIGTERM reports an interrupted result: the job is not blamed, and is retried without spending an attempt", async () => {
    const server = await startServerProcess();
    try {
      // The first attempt waits to be stopped; the second one (the marker file exists then) finishes.
      const marker = join(server.dataDir, "tried-once");
      const command = `echo begin; if [ -e ${marker} ]; then echo second; exit 0; fi; touch ${marker}; sleep 300`;
      const id = (await runCli(server, ["run", "--detach", "--", command])).stdout.trim();
      await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("begin"));
      const worker = (await jsonCli<WorkerJson[]>(server, ["workers"])).find((w) => w.jobId === id);
      assert.ok(worker, "the job has a live worker");
      process.kill(Number(worker.providerResourceId), "SIGTERM");
      const job = await jobWhen(server, id, (j) => j.state === "succeeded" && Boolean(j.timeline.destroyed));
      assert.equal(job.state, "succeeded", job.reason);
      assert.equal(job.attempts, 2);
      assert.equal(job.uncountedAttempts, 1, "the interrupted attempt is not counted");
      assert.equal(job.maxAttempts, 1);
      const first = (job as unknown as { attemptHistory: { failureReason: string }[] }).attemptHistory[0];
      assert.match(first.failureReason, /stopped by its provider \(local\) while the job ran; the command itself did not fail/);
      assert.doesNotMatch(first.failureReason, /exited with code 143|before reporting a result/);
      const logs = await runCli(server, ["logs", id]);
      assert.equal(logs.stdout, "begin\nbegin\nsecond\n");
      assert.match(logs.stderr, /\[hodei\] the worker was stopped from outside \(SIGTERM\); the job's process tree was killed/);
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });

  it("a control plane SIGKILLed while a worker registers: after a restart the job still succeeds", async () => {
    // No warm agents: the worker's process appears only when the job is provisioned, and takes a
    // moment to boot, so the server can be frozen before the agent's Register reaches it.
    const env = { HODEI_LOCAL_WARM_WORKERS: "0" };
    const first = await startServerProcess(env);
    const { clusterId, dataDir, port } = first;
    let second: ServerProcess | undefined;
    try {
      // The job runs long enough for its agent's log to be read while its worker's directory exists.
      const id = (await runCli(first, ["run", "--detach", "--", "sleep 4; echo survived the restart"])).stdout.trim();
      // The server logs this once the worker's start has returned, its agent's assignment handed
      // over (to the provider's launcher, which passes it on): freeze it then, before the agent has
      // booted and sent its Register.
      await eventually(() => first.output.some((line) => line.includes('"worker created;')), 15_000, 1);
      first.process.kill("SIGSTOP");
      // The agent boots and sends Register into the frozen server's socket (a frozen server cannot
      // tell when that happened; the agent's log checked below proves it did). Generous: on a
      // loaded machine the agent's Node takes a while to boot.
      await sleep(3000);
      await first.kill();
      second = await startServerProcess(env, { dataDir, clusterId, port });
      const running = await jobWhen(second, id, (j) => j.state === "running" || Boolean(j.timeline.finished));
      const agentLog = agentLogs(dataDir); // read while the worker's directory exists (the job sleeps 4 s)
      assert.equal(running.state, "running", `read the agent's log while the job runs\nagent log:\n${agentLog}`);
      const job = await jobWhen(second, id, (j) => Boolean(j.timeline.destroyed));
      assert.equal(job.state, "succeeded", `${job.reason}\nagent log:\n${agentLog}\nserver:\n${second.output.slice(-15).join("\n")}`);
      assert.equal(job.attempts, 1, "no attempt was lost");
      // The agent's own log shows its Register was cut off and retried, not answered before the kill.
      assert.match(agentLog, /cannot register with the control plane yet; retrying/, `agent log:\n${agentLog}`);
      console.log(`# the agent saw: ${agentLog.split("\n").find((l) => l.includes("cannot register"))}`);
      const logs = await runCli(second, ["logs", id]);
      assert.equal(logs.stdout, "survived the restart\n");
      assert.deepEqual(await leftoverProcesses(second), []);
    } finally {
      killCluster(clusterId);
      if (first.process.exitCode === null && first.process.signalCode === null) first.process.kill("SIGKILL");
      await first.kill();
      await second?.stop();
      first.cleanup();
    }
  });
});
