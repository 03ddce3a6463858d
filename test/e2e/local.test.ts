/**
 * The whole system through the CLI on the local provider: a real server process, real agents,
 * real gRPC streams. Every test ends by proving that no process of its cluster is left.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import {
  bearer,
  eventually,
  type JobJson,
  jobWhen,
  jsonCli,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  sleep,
  spawnCli,
  startServerProcess,
  stopLeavingNothing,
  type TokenJson,
  waitDestroyed,
  type WorkerJson,
  workerProcesses,
} from "./harness.js";
import { findMarkedProcesses } from "../../src/providers/process-table.js";
import { tempDir } from "../fixtures/temp-dir.js";


async function assertNothingLeft(server: ServerProcess): Promise<void> {
  const left = await leftoverProcesses(server);
  assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
  const workers = await jsonCli<WorkerJson[]>(server, ["workers"]);
  assert.deepEqual(workers, [], "no worker should be live");
}

describe("hodei on the local provider", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess();
  });
  afterEach(async () => {
    await assertNothingLeft(server);
  });
  after(async () => {
    await stopLeavingNothing(server);
  });

  it("runs hello world, prints its output and exits 0", async () => {
    const result = await runCli(server, ["run", "--", "echo", "hello world"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "hello world\n");
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls"]);
    assert.equal(job.state, "succeeded");
    assert.equal(job.exitCode, 0);
    assert.equal(job.provider, "local");
    assert.equal(job.attempts, 1);
    assert.match(job.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const done = await waitDestroyed(server, job.id);
    for (const step of ["queued", "provisioned", "registered", "started", "finished", "destroyed"]) {
      assert.ok(done.timeline[step], `timeline has ${step}`);
    }
    const order = ["queued", "provisioned", "registered", "started", "finished", "destroyed"].map((k) => Date.parse(done.timeline[k]));
    assert.deepEqual([...order].sort((a, b) => a - b), order, "timeline is in order");
  });

  it("records the OTP token with the worker's provider_resource_id and consumes it", async () => {
    const result = await runCli(server, ["run", "--", "true"]);
    assert.equal(result.code, 0, result.stderr);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
    const done = await waitDestroyed(server, job.id);
    const tokens = await jsonCli<TokenJson[]>(server, ["tokens"]);
    const token = tokens.find((t) => t.jobId === done.id);
    assert.ok(token, "the job has a token");
    assert.equal(token.provider, "local");
    assert.equal(token.resourceType, "process_id");
    assert.equal(token.consumed, true);
    assert.match(token.providerResourceId, /^\d+$/);
    const all = await jsonCli<WorkerJson[]>(server, ["workers", "--all"]);
    const worker = all.find((w) => w.id === token.workerId);
    assert.equal(worker?.providerResourceId, token.providerResourceId);
    assert.equal(worker?.state, "destroyed");
    const raw = await runCli(server, ["tokens", "--json"]);
    assert.doesNotMatch(raw.stdout, /hodei_otp_/, "the secret is never listed");
  });

  it("runs a data-processing pipeline", async () => {
    const result = await runCli(server, ["run", "--", "seq 1 100000 | grep 7 | sort -r | uniq | wc -l | tr -d ' '"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "40951"); // numbers up to 100000 with a 7 in them
  });

  it("runs a CPU-bound loop", async () => {
    const result = await runCli(server, ["run", "--", "i=0; n=0; while [ $i -lt 200000 ]; do n=$(( (n + i * i) % 1000003 )); i=$((i+1)); done; echo $n"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.trim(), /^\d+$/);
  });

  it("fails a job that exits 42 with exit code 42", async () => {
    const result = await runCli(server, ["run", "--", "echo about to fail; exit 42"]);
    assert.equal(result.code, 42);
    assert.equal(result.stdout, "about to fail\n");
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
    assert.equal(job.state, "failed");
    assert.equal(job.exitCode, 42);
    assert.match(job.reason, /exited with code 42/);
  });

  it("runs a multi-line script from a file, with env", async () => {
    const { writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const file = join(tempDir("hodei-script-"), "job.sh");
    writeFileSync(file, 'set -e\necho "greeting: $GREETING"\nfor i in 1 2 3; do\n  echo "line $i"\ndone\necho to-stderr >&2\n');
    const result = await runCli(server, ["run", "-e", "GREETING=hola", "--script", file]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "greeting: hola\nline 1\nline 2\nline 3\n");
    assert.match(result.stderr, /to-stderr/);
  });

  it("never shows the OTP token to the job", async () => {
    const result = await runCli(server, ["run", "--", "env"]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /HODEI_OTP_TOKEN|hodei_otp_/);
    assert.match(result.stdout, /HODEI_JOB_ID=/);
    // Nor the agent's own malloc tuning (server/agent-env.ts), which its process does have.
    assert.doesNotMatch(result.stdout, /GLIBC_TUNABLES|HODEI_AGENT_OWN_ENV/);
  });

  it("tunes the agents' malloc (huge pages), in their own environment only", { skip: process.platform !== "linux" && "reads /proc" }, async () => {
    const { readFileSync } = await import("node:fs");
    const idleAgents = () => findMarkedProcesses(server.clusterId).filter((p) => p.warmId !== "" && p.workerId === "");
    // The pool fills once the provider has started a worker, off that job's path.
    assert.equal((await runCli(server, ["run", "--", "true"])).code, 0);
    await eventually(() => idleAgents().length > 0);
    // An agent that left meanwhile (the job's, after its result) has no environ to read.
    const environs = idleAgents().flatMap(({ pid }) => {
      try {
        return [readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")];
      } catch {
        return [];
      }
    });
    assert.ok(environs.length > 0, "the server's idle agents are found");
    for (const environ of environs) assert.ok(environ.includes("GLIBC_TUNABLES=glibc.malloc.hugetlb=1"), environ.filter((v) => v.startsWith("GLIBC")).join(" ") || "no GLIBC_TUNABLES");
  });

  it("cancels a running job and kills its whole process tree", async () => {
    const marker = `hodei-cancel-${Date.now()}`;
    const id = (await runCli(server, ["run", "--detach", "--", `sleep 300 & sleep 301 & echo ${marker}; wait`])).stdout.trim();
    const running = await jobWhen(server, id, (j) => ["running"].includes(j.state), 20_000);
    assert.equal(running.state, "running");
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes(marker));
    assert.ok(workerProcesses(server.clusterId, server.dataDir).length >= 3, "agent, shell and sleeps are running");
    const canceled = await runCli(server, ["cancel", id]);
    assert.equal(canceled.code, 0, canceled.stderr);
    const job = await waitDestroyed(server, id);
    assert.equal(job.state, "canceled");
    const logs = await runCli(server, ["logs", id]);
    assert.match(logs.stdout + logs.stderr, /canceled/);
  });

  it("cancels through Ctrl-C on hodei run", async () => {
    const child = spawnCli(server, ["run", "--", "echo ready; sleep 300"]);
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d));
    await eventually(() => out.includes("ready"));
    child.kill("SIGINT");
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    assert.equal(code, 130);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
    assert.equal((await waitDestroyed(server, job.id)).state, "canceled");
  });

  it("fails a job whose worker is killed mid-job, with a clear reason", async () => {
    const id = (await runCli(server, ["run", "--detach", "--", "echo begin; sleep 300"])).stdout.trim();
    await jobWhen(server, id, (j) => ["running"].includes(j.state), 20_000);
    const workers = await jsonCli<WorkerJson[]>(server, ["workers"]);
    const worker = workers.find((w) => w.jobId === id);
    assert.ok(worker);
    process.kill(Number(worker.providerResourceId), "SIGKILL");
    const job = await jobWhen(server, id, (j) => ["failed"].includes(j.state), 20_000);
    assert.equal(job.state, "failed");
    assert.match(job.reason, /killed by SIGKILL|disappeared/);
    assert.match(job.reason, new RegExp(worker.providerResourceId));
    await waitDestroyed(server, id);
  });

  it("runs 20 concurrent jobs, all succeeding", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => runCli(server, ["run", "--", `echo job-${i}`], { timeoutMs: 120_000 })));
    results.forEach((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `job-${i}\n`);
    });
    const jobs = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "20"]);
    assert.equal(jobs.filter((j) => j.state === "succeeded").length, 20);
  });
});

describe("bad input", () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess();
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  async function submitRaw(body: unknown) {
    const res = await fetch(`${server.url}/hodei.v1.JobService/SubmitJob`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(server) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string; job?: JobJson } };
  }

  it("accepts a plain curl-style JSON submission", async () => {
    const res = await submitRaw({ command: ["echo", "hi"] });
    assert.equal(res.status, 200);
    assert.equal(res.body.job?.state, "queued");
    await eventually(async () => (await jsonCli<JobJson>(server, ["jobs", "get", res.body.job!.id])).timeline.destroyed);
  });

  const cases: [string, unknown, RegExp][] = [
    ["an empty command", { command: [] }, /command/],
    ["an unknown provider", { command: ["true"], provider: "mars" }, /provider.*mars/],
    ["a negative timeout", { command: ["true"], timeoutSeconds: -5 }, /timeoutSeconds/],
    ["an absurd timeout", { command: ["true"], timeoutSeconds: 99_999_999 }, /timeoutSeconds/],
    ["an oversized env", { command: ["true"], env: { BIG: "x".repeat(200_000) } }, /env/],
    ["a command of the wrong type", { command: "echo hi" }, /command/],
    ["a timeout of the wrong type", { command: ["true"], timeoutSeconds: "soon" }, /timeout/i],
  ];
  for (const [what, body, field] of cases) {
    it(`refuses ${what} with a 4xx naming the field, storing nothing`, async () => {
      const before = (await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "500"])).length;
      const res = await submitRaw(body);
      assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
      assert.match(res.body.message ?? "", field);
      const afterCount = (await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "500"])).length;
      assert.equal(afterCount, before);
    });
  }

  it("explains a bad --env in the CLI", async () => {
    const res = await runCli(server, ["run", "-e", "NOEQUALS", "--", "true"]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /K=V|KEY=VALUE|env/i);
  });
});
