/**
 * The queue, whole system, on the local provider with one worker at a time: jobs start by priority,
 * a job that cannot start within its queue timeout ends timed_out saying why, a delayed job waits,
 * jobs are listed by label, and a reused idempotency key with another spec answers 409. Every test
 * ends by proving that no worker process of its cluster is left.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import {
  bearer,
  type JobJson,
  jobWhen,
  jsonCli,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  startServerProcess,
  stopLeavingNothing,
  waitDestroyed,
  type WorkerJson,
} from "./harness.js";

/** The queue's fields as `hodei jobs get --json` prints them. */
type QueueJobJson = JobJson & { priority: number; queueTimeoutSeconds: number; runAt: string; labels: Record<string, string> };

describe("the queue on the local provider, one worker at a time", () => {
  let server: ServerProcess;
  let gates: string;

  before(async () => {
    server = await startServerProcess({ HODEI_LOCAL_MAX_WORKERS: "1" });
    gates = mkdtempSync(join(tmpdir(), "hodei-gates-"));
  });
  afterEach(async () => {
    const left = await leftoverProcesses(server);
    assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
    assert.deepEqual(await jsonCli<WorkerJson[]>(server, ["workers"]), [], "no worker should be live");
  });
  after(async () => {
    rmSync(gates, { recursive: true, force: true });
    await stopLeavingNothing(server);
  });

  /** Submits a job that holds the only worker until `open()` is called; resolves once it runs. */
  async function blocker(name: string): Promise<{ id: string; open: () => void }> {
    const gate = join(gates, name);
    const id = await detach(["--", `while [ ! -f '${gate}' ]; do sleep 0.05; done`]);
    const running = await jobWhen(server, id, (j) => j.state === "running");
    assert.equal(running.state, "running", running.reason);
    return { id, open: () => writeFileSync(gate, "") };
  }

  async function detach(args: string[]): Promise<string> {
    const result = await runCli(server, ["run", "--detach", ...args]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  const getJob = (id: string) => jsonCli<QueueJobJson>(server, ["jobs", "get", id]);

  it("starts the waiting jobs by priority, and in submit order within one priority", async () => {
    const block = await blocker("priority");
    const low = await detach(["--priority", "-5", "--", "true"]);
    const first = await detach(["--", "true"]);
    const high = await detach(["--priority", "10", "--", "true"]);
    const second = await detach(["--", "true"]);
    assert.equal((await getJob(high)).priority, 10, "jobs get --json shows the priority");
    assert.equal((await getJob(low)).priority, -5);
    block.open();
    const done = [];
    for (const id of [low, first, high, second]) done.push(await waitDestroyed(server, id));
    for (const job of done) assert.equal(job.state, "succeeded", job.reason);
    const byStart = [...done].sort((a, b) => Date.parse(a.timeline.started) - Date.parse(b.timeline.started)).map((j) => j.id);
    assert.deepEqual(byStart, [high, first, second, low]);
    await waitDestroyed(server, block.id);
  });

  it("ends a job that cannot start within its queue timeout as timed_out, saying it never started and why", async () => {
    const block = await blocker("queue-timeout");
    const started = Date.now();
    const result = await runCli(server, ["run", "--queue-timeout", "2", "--", "echo should-not-run"]);
    assert.equal(result.code, 124, result.stderr);
    assert.equal(result.stdout, "", "the command never ran");
    assert.match(result.stderr, /timed_out: never started within its queue timeout of 2s: local was at capacity \(1 of 1 workers busy\)/);
    assert.ok(Date.now() - started >= 2000, "not before its queue timeout");
    const [job] = await jsonCli<QueueJobJson[]>(server, ["jobs", "ls", "--state", "timed_out", "--limit", "1"]);
    assert.equal(job.state, "timed_out");
    assert.equal(job.attempts, 0, "no worker was started for it");
    assert.match(job.reason, /never started/);
    assert.match(job.reason, /at capacity/);
    assert.equal(job.queueTimeoutSeconds, 2);
    assert.equal((await getJob(block.id)).state, "running", "the running job is untouched");
    block.open();
    assert.equal((await waitDestroyed(server, block.id)).state, "succeeded");
  });

  it("keeps a delayed job queued until it is due", async () => {
    const id = await detach(["--delay", "2", "--", "true"]);
    const queued = await getJob(id);
    assert.equal(queued.state, "queued");
    const runAt = Date.parse(queued.runAt);
    assert.ok(runAt >= Date.parse(queued.createdAt) + 2000, `runAt ${queued.runAt} is 2 s after ${queued.createdAt}`);
    const human = await runCli(server, ["jobs", "get", id]);
    assert.match(human.stdout, /run at +\d{4}-\S+Z \(/, human.stdout);
    const done = await waitDestroyed(server, id);
    assert.equal(done.state, "succeeded", done.reason);
    assert.ok(Date.parse(done.timeline.provisioned) >= runAt, "not provisioned before its run-at");
    const past = await detach(["--run-at", "2000-01-01T00:00:00Z", "--", "true"]);
    const ran = await waitDestroyed(server, past);
    assert.equal(ran.state, "succeeded", "a run-at in the past means now");
  });

  it("lists jobs by label, every --label required", async () => {
    const submit = async (labels: Record<string, string>) => {
      const res = await fetch(`${server.url}/hodei.v1.JobService/SubmitJob`, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer(server) },
        body: JSON.stringify({ command: ["true"], labels }),
      });
      assert.equal(res.status, 200);
      return ((await res.json()) as { job: { id: string } }).job.id;
    };
    const a = await submit({ team: "infra", env: "prod" });
    const b = await submit({ team: "infra", env: "dev" });
    const c = await submit({ team: "web", env: "prod" });
    const ids = async (...labels: string[]) => (await jsonCli<QueueJobJson[]>(server, ["jobs", ...labels.flatMap((l) => ["--label", l])])).map((j) => j.id);
    assert.deepEqual(await ids("team=infra"), [b, a]);
    assert.deepEqual(await ids("team=infra", "env=prod"), [a]);
    assert.deepEqual(await ids("env=prod"), [c, a]);
    const bad = await runCli(server, ["jobs", "--label", "not a label=x"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid request: labelSelector: /);
    for (const id of [a, b, c]) assert.equal((await waitDestroyed(server, id)).state, "succeeded");
  });

  it("answers 409 already_exists for a reused idempotency key with another spec, and the first job for the same spec", async () => {
    const submit = (body: object) =>
      fetch(`${server.url}/hodei.v1.JobService/SubmitJob`, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer(server) },
        body: JSON.stringify(body),
      });
    const first = await submit({ command: ["echo", "one"], idempotencyKey: "e2e-key" });
    assert.equal(first.status, 200);
    const id = ((await first.json()) as { job: { id: string } }).job.id;
    const same = await submit({ command: ["echo", "one"], idempotencyKey: "e2e-key" });
    assert.equal(((await same.json()) as { job: { id: string } }).job.id, id);
    const other = await submit({ command: ["echo", "two"], idempotencyKey: "e2e-key" });
    assert.equal(other.status, 409);
    const error = (await other.json()) as { code: string; message: string };
    assert.equal(error.code, "already_exists");
    assert.match(error.message, /idempotencyKey: "e2e-key" was already used for job/);
    assert.equal((await waitDestroyed(server, id)).state, "succeeded");
  });
});
