/**
 * The reconcile loop, step by step, on a real SQLite store with a fake provider and a manual clock:
 * every deadline, the retry policy, provider outages, orphans, hung provider calls and the control
 * plane's own absences. No test sleeps: time moves by clock.advance and passes run by runOnce().
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { ManualClock } from "../core/clock.js";
import { PermanentError } from "../core/errors.js";
import { newId } from "../core/ids.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { hashToken } from "../core/token.js";
import { createMetrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { DEFAULT_LEADER_LEASE_MS } from "./leadership.js";
import { BEAT_INTERVAL_MS } from "./liveness.js";
import { PROVIDER_CONCURRENCY } from "./provider-calls.js";
import { PROVIDER_RETRY_MS } from "./provider-health.js";
import { Reconciler, type ReconcilerOptions } from "./reconciler.js";

const REGISTRATION_MS = 60_000;
const HEARTBEAT_TIMEOUT_MS = 30_000;
const ORPHAN_GRACE_MS = 30_000;
const INTERVAL_MS = 2_000;
const PROVIDER_CALL_MS = 10_000;

describe("Reconciler", () => {
  let clock: ManualClock;
  let store: Store;
  let provider: FakeProvider;
  let reconciler: Reconciler;
  /** Workers whose agent the reconciler asked to stop (the AgentChannel). */
  let told: string[];
  /** The backoff's jitter draws: each decision takes the next (then 0.5 when they run out). */
  let draws: number[];

  function makeReconciler(overrides: Partial<ReconcilerOptions> = {}): Reconciler {
    return new Reconciler({
      store,
      providers: new Map([["fake", { provider, maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      registrationTimeoutMs: REGISTRATION_MS,
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
      reconcileIntervalMs: INTERVAL_MS,
      orphanGraceMs: ORPHAN_GRACE_MS,
      stopGraceMs: 1000,
      agents: {
        cancel(workerId) {
          told.push(workerId);
          return true;
        },
      },
      random: () => draws.shift() ?? 0.5,
      ...overrides,
    });
  }

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    provider = new FakeProvider("fake", () => clock.nowMs());
    told = [];
    draws = [];
    reconciler = makeReconciler();
  });

  afterEach(async () => {
    await reconciler.settle();
    await store.close();
  });

  /** One pass, and every provider call it started. */
  async function pass(): Promise<void> {
    await reconciler.runOnce();
    await reconciler.settle();
  }

  /** Time passing while the control plane runs (its liveness timer beating). */
  function tick(ms: number): void {
    for (let left = ms; left > 0; left -= BEAT_INTERVAL_MS) {
      clock.advance(Math.min(BEAT_INTERVAL_MS, left));
      reconciler.liveness.beat();
    }
  }

  async function submit(overrides: Partial<JobSpec> = {}): Promise<JobRow> {
    const spec = validateJobSpec({ command: ["true"], provider: "fake", ...overrides }, { provider: "fake", timeoutSeconds: 600, providers: ["fake"] });
    const row = await store.jobs.insert(newId(), spec, clock.nowMs());
    clock.advance(1); // jobs are claimed in submit order
    return row;
  }

  async function job(id: string): Promise<JobRow> {
    const row = await store.jobs.get(id);
    assert.ok(row, `job ${id}`);
    return row;
  }

  async function workerOf(jobId: string, attempt?: number): Promise<WorkerRow> {
    const workers = await store.workers.listOfJob(jobId);
    const worker = attempt === undefined ? workers.at(-1) : workers.find((w) => w.attempt === attempt);
    assert.ok(worker, `a worker of job ${jobId}`);
    return worker;
  }

  /** What the agent of the job's latest worker does: redeem its OTP token, then take the job. */
  async function agentStarts(jobId: string): Promise<WorkerRow> {
    const worker = await workerOf(jobId);
    const started = provider.workerOf(worker.id);
    assert.ok(started, "the provider started the worker");
    assert.ok(await store.tokens.consume(hashToken(started.spec.otpToken), clock.nowMs()), "the token is redeemed");
    assert.ok(await store.attempts.register(worker.id, hashToken(`session-${worker.id}`), "host", clock.nowMs()));
    const registered = (await store.workers.get(worker.id))!;
    assert.equal(await store.attempts.dispatch(registered, clock.nowMs()), true);
    return (await store.workers.get(worker.id))!;
  }

  async function heartbeat(worker: WorkerRow): Promise<void> {
    await store.workers.recordHeartbeat(worker.id, clock.nowMs());
  }

  async function succeed(worker: WorkerRow): Promise<void> {
    const now = clock.nowMs();
    assert.ok(await store.attempts.end(worker, "succeeded", now, { exit_code: 0, finished_at: now }, ""));
  }

  describe("provision", () => {
    it("claims queued jobs up to the provider's capacity and records each worker's resource id on its token", async () => {
      const jobs = [];
      for (let i = 0; i < 6; i++) jobs.push(await submit());
      await pass();
      assert.equal(provider.workers.size, 4, "capacity 4");
      const states = await Promise.all(jobs.map(async (j) => (await job(j.id)).state));
      assert.deepEqual(states.sort(), ["provisioning", "provisioning", "provisioning", "provisioning", "queued", "queued"]);
      for (const token of await store.tokens.list(10)) assert.match(token.provider_resource_id ?? "", /^r\d+$/);
    });

    it("starts the next job once a worker is destroyed", async () => {
      reconciler = makeReconciler({ providers: new Map([["fake", { provider, maxWorkers: 1, workerServerUrl: "http://x" }]]) });
      const first = await submit();
      const second = await submit();
      await pass();
      assert.equal((await job(second.id)).state, "queued");
      await succeed(await agentStarts(first.id));
      await pass(); // destroys the first worker
      await pass(); // claims the second job
      assert.equal((await job(second.id)).state, "provisioning");
    });
  });

  describe("registration deadline", () => {
    it("fails a worker that does not register in time, revokes its token and destroys it", async () => {
      const j = await submit();
      await pass();
      const worker = await workerOf(j.id);
      tick(REGISTRATION_MS - 1000);
      await pass();
      assert.equal((await job(j.id)).state, "provisioning", "not before the deadline");
      tick(1000);
      await pass();
      const failed = await job(j.id);
      assert.equal(failed.state, "failed");
      assert.match(failed.reason, /did not register within 60s/);
      await pass();
      assert.equal((await store.workers.get(worker.id))?.state, "destroyed");
      assert.deepEqual(provider.stopped, [worker.provider_resource_id]);
      const [token] = await store.tokens.list(1);
      assert.equal(token.consumed_at, null);
      assert.ok(token.expires_at <= clock.nowMs(), "the unused token was revoked");
    });
  });

  describe("heartbeats", () => {
    it("fails a worker whose heartbeat lapsed and keeps one that heartbeats", async () => {
      const silent = await submit();
      const chatty = await submit();
      await pass();
      const silentWorker = await agentStarts(silent.id);
      const chattyWorker = await agentStarts(chatty.id);
      void silentWorker;
      for (let t = 0; t <= HEARTBEAT_TIMEOUT_MS; t += 5000) {
        tick(5000);
        await heartbeat(chattyWorker);
        await pass();
      }
      assert.equal((await job(silent.id)).state, "failed");
      assert.match((await job(silent.id)).reason, /no heartbeat from the worker for 3\ds/);
      assert.equal((await job(chatty.id)).state, "running");
      assert.equal((await job(silent.id)).logs_incomplete, 1, "a running worker's logs may be incomplete");
    });

    it("does not blame workers for the control plane's own absence (frozen past the heartbeat timeout)", async () => {
      const j = await submit();
      await pass();
      const worker = await agentStarts(j.id);
      tick(4000);
      await heartbeat(worker);
      clock.advance(HEARTBEAT_TIMEOUT_MS * 2); // SIGSTOP: no beat, no pass, nothing read from sockets
      await pass();
      assert.equal((await job(j.id)).state, "running", "the first pass after resuming fails nobody");
      tick(HEARTBEAT_TIMEOUT_MS - 1000);
      await pass();
      assert.equal((await job(j.id)).state, "running", "present time since the last heartbeat is under the timeout");
      tick(2000);
      await pass();
      assert.equal((await job(j.id)).state, "failed", "a worker still silent after the full timeout of present time is lost");
    });

    it("gives every worker its full deadlines after a restart of the control plane", async () => {
      const j = await submit();
      await pass();
      const worker = await agentStarts(j.id);
      await heartbeat(worker);
      clock.advance(10 * 60_000); // the control plane was down for ten minutes
      reconciler = makeReconciler();
      await pass();
      assert.equal((await job(j.id)).state, "running");
      tick(HEARTBEAT_TIMEOUT_MS + 1000);
      await pass();
      assert.equal((await job(j.id)).state, "failed");
    });
  });

  describe("timeout backstop", () => {
    it("ends a running job that outlived its timeout as timed_out when its agent did not", async () => {
      const j = await submit({ timeoutSeconds: 20 });
      await pass();
      const worker = await agentStarts(j.id);
      for (let i = 0; i < 5; i++) {
        tick(5000);
        await heartbeat(worker);
        await pass();
      }
      assert.equal((await job(j.id)).state, "running", "the agent gets the backstop margin first (25 s of 20 + 10)");
      tick(5000);
      await heartbeat(worker);
      await pass();
      const timedOut = await job(j.id);
      assert.equal(timedOut.state, "timed_out");
      assert.match(timedOut.reason, /enforced by the control plane/);
    });
  });

  describe("retries", () => {
    it("retries a lost attempt after its backoff, and the retry succeeds", async () => {
      const j = await submit({ maxAttempts: 2 });
      provider.nextStartError = new Error("container runtime hiccup");
      await pass();
      let row = await job(j.id);
      assert.equal(row.state, "queued");
      assert.match(row.reason, /attempt 1 lost: could not start the worker on fake: container runtime hiccup; retrying/);
      await pass();
      assert.equal((await job(j.id)).state, "queued", "not before the backoff");
      tick(1000);
      await pass();
      row = await job(j.id);
      assert.equal(row.state, "provisioning");
      assert.equal(row.attempts, 2);
      await succeed(await agentStarts(j.id));
      row = await job(j.id);
      assert.equal(row.state, "succeeded");
      assert.deepEqual((await store.workers.listOfJob(j.id)).map((w) => w.failure_reason), ["could not start the worker on fake: container runtime hiccup", ""]);
    });

    it("fails at once when retrying cannot help, whatever attempts remain", async () => {
      const j = await submit({ maxAttempts: 5 });
      provider.nextStartError = new PermanentError("image nope:1 not found");
      await pass();
      const row = await job(j.id);
      assert.equal(row.state, "failed");
      assert.equal(row.attempts, 1);
      assert.match(row.reason, /image nope:1 not found/);
    });

    it("waits out an unavailable provider without spending the job's attempts", async () => {
      const j = await submit();
      provider.isUp = false; // start() fails as a daemon that does not answer does (UnavailableError)
      await pass();
      let row = await job(j.id);
      assert.equal(row.state, "queued");
      assert.equal(row.uncounted_attempts, 1);
      assert.equal(row.max_attempts, 1, "the user's limit is left as it was");
      assert.match(row.reason, /not counted against maxAttempts/);
      tick(PROVIDER_RETRY_MS);
      await pass();
      assert.equal((await job(j.id)).state, "queued", "while its health check fails the provider gets no work");
      provider.isUp = true;
      tick(PROVIDER_RETRY_MS);
      await pass();
      row = await job(j.id);
      assert.equal(row.state, "provisioning", row.reason);
      assert.equal(row.attempts, 2);
      await succeed(await agentStarts(j.id));
      row = await job(j.id);
      assert.equal(row.state, "succeeded");
      assert.deepEqual([row.attempts, row.uncounted_attempts, row.max_attempts], [2, 1, 1]);
    });

    it("counts a worker lost while its provider was unavailable as the provider's loss, and retries the job", async () => {
      const j = await submit();
      await pass();
      const worker = await agentStarts(j.id);
      provider.isUp = false; // the daemon stops; its containers die with it
      tick(INTERVAL_MS);
      await pass();
      provider.workerOf(worker.id)!.status = { state: "exited", exitCode: 143, reason: "exited with code 143" };
      provider.isUp = true;
      tick(PROVIDER_RETRY_MS);
      await pass();
      const row = await job(j.id);
      assert.equal(row.state, "queued", row.reason);
      assert.match(row.reason, /exited with code 143 before reporting a result; fake was unavailable meanwhile, so the loss is the provider's/);
      assert.equal(row.uncounted_attempts, 1);
    });

    it("does not count a worker that an earlier run of the control plane started and that never registered", async () => {
      const j = await submit();
      await pass();
      const worker = await workerOf(j.id);
      provider.workerOf(worker.id)!.status = { state: "gone" }; // e.g. a local agent that never got its assignment
      // The control plane died and was restarted; the new process (a new replica id) leads once the
      // dead one's lease has run out.
      clock.advance(DEFAULT_LEADER_LEASE_MS);
      reconciler = makeReconciler();
      tick(INTERVAL_MS);
      await pass();
      const row = await job(j.id);
      assert.equal(row.state, "queued", row.reason);
      assert.match(row.reason, /disappeared before registering; the control plane restarted while the worker was starting/);
      assert.equal(row.uncounted_attempts, 1);
    });

    it("retries an exit code the job retries through the same policy: counted, after a jittered backoff, on a new worker with a new token", async () => {
      const j = await submit({ maxAttempts: 3, retryOnExitCodes: "3" });
      await pass();
      const first = await agentStarts(j.id);
      const firstToken = provider.workerOf(first.id)!.spec.otpToken;
      draws = [0]; // the shortest delay the jitter allows: half of the 1 s ceiling
      await reconciler.loseAttempt(first, "the command exited with code 3", "exit_code", "exit_code", { exitCode: 3, isLogTruncated: false, isLogIncomplete: false });
      let row = await job(j.id);
      assert.equal(row.state, "queued");
      assert.equal(row.reason, "attempt 1 failed: the command exited with code 3; retrying");
      assert.equal(row.exit_code, null, "the job has no exit code until it ends");
      assert.equal(row.not_before_ms, clock.nowMs() + 500);
      assert.deepEqual([row.attempts, row.uncounted_attempts], [1, 0], "counted against maxAttempts");
      const ended = await store.workers.get(first.id);
      assert.deepEqual([ended?.state, ended?.exit_code, ended?.failure_reason], ["destroying", 3, "the command exited with code 3"]);
      tick(499);
      await pass();
      assert.equal((await job(j.id)).state, "queued", "not before the backoff");
      tick(1);
      await pass();
      row = await job(j.id);
      assert.equal(row.state, "provisioning");
      assert.equal(row.attempts, 2);
      const second = await workerOf(j.id, 2);
      assert.notEqual(second.id, first.id);
      assert.notEqual(provider.workerOf(second.id)!.spec.otpToken, firstToken, "a new OTP token");
      await succeed(await agentStarts(j.id));
      row = await job(j.id);
      assert.deepEqual([row.state, row.exit_code, row.attempts], ["succeeded", 0, 2]);
    });

    it("fails the job with the last exit code once maxAttempts are spent, keeping its logs' state", async () => {
      const j = await submit({ maxAttempts: 2, retryOnExitCodes: "any" });
      await pass();
      await reconciler.loseAttempt(await agentStarts(j.id), "the command exited with code 7", "exit_code", "exit_code", { exitCode: 7, isLogTruncated: false, isLogIncomplete: false });
      tick(1000);
      await pass();
      const last = await agentStarts(j.id);
      await reconciler.loseAttempt(last, "the command exited with code 9", "exit_code", "exit_code", { exitCode: 9, isLogTruncated: true, isLogIncomplete: false });
      const row = await job(j.id);
      assert.deepEqual([row.state, row.exit_code, row.reason, row.attempts], ["failed", 9, "the command exited with code 9", 2]);
      assert.deepEqual([row.logs_truncated, row.logs_incomplete], [1, 0], "from the result, not from the worker having run");
      assert.ok(row.finished_at);
      const workers = await store.workers.listOfJob(j.id);
      assert.deepEqual(workers.map((w) => w.exit_code), [7, 9]);
      assert.deepEqual(workers.map((w) => w.failure_reason), ["the command exited with code 7", ""], "the last exit is the job's answer, as for any failed command");
    });

    it("does not count a disruption between exit-code failures, nor an exit-code failure as a disruption", async () => {
      const j = await submit({ maxAttempts: 2, retryOnExitCodes: "3" });
      await pass();
      await reconciler.loseAttempt(await agentStarts(j.id), "stopped by its provider", "interrupted", "disruption");
      tick(5000);
      await pass();
      await reconciler.loseAttempt(await agentStarts(j.id), "the command exited with code 3", "exit_code", "exit_code", { exitCode: 3, isLogTruncated: false, isLogIncomplete: false });
      let row = await job(j.id);
      assert.deepEqual([row.state, row.attempts, row.uncounted_attempts], ["queued", 2, 1], "attempt 2 is the first counted one of 2");
      tick(1000);
      await pass();
      await reconciler.loseAttempt(await agentStarts(j.id), "the command exited with code 3", "exit_code", "exit_code", { exitCode: 3, isLogTruncated: false, isLogIncomplete: false });
      row = await job(j.id);
      assert.deepEqual([row.state, row.attempts, row.uncounted_attempts, row.exit_code], ["failed", 3, 1, 3]);
    });

    it("spreads the retries of jobs that failed together over [half, all] of the backoff, by the injected jitter", async () => {
      const jobs: JobRow[] = [];
      for (let i = 0; i < 4; i++) jobs.push(await submit({ maxAttempts: 3, retryOnExitCodes: "1" }));
      await pass();
      const started: WorkerRow[] = [];
      for (const j of jobs) started.push(await agentStarts(j.id));
      const failedAt = clock.nowMs();
      draws = [0, 0.25, 0.5, 0.999];
      for (const worker of started) {
        await reconciler.loseAttempt(worker, "the command exited with code 1", "exit_code", "exit_code", { exitCode: 1, isLogTruncated: false, isLogIncomplete: false });
      }
      const notBefore = await Promise.all(jobs.map(async (j) => (await job(j.id)).not_before_ms - failedAt));
      assert.deepEqual(notBefore, [500, 625, 750, 999]);
      const claimedBy = async (ms: number) => {
        tick(ms);
        await pass();
        return Promise.all(jobs.map(async (j) => (await job(j.id)).state === "provisioning"));
      };
      assert.deepEqual(await claimedBy(499), [false, false, false, false]);
      assert.deepEqual(await claimedBy(1), [true, false, false, false]);
      assert.deepEqual(await claimedBy(250), [true, true, true, false]);
      assert.deepEqual(await claimedBy(249), [true, true, true, true]);
    });

    it("fails a job whose worker vanished while its provider was healthy", async () => {
      const j = await submit();
      await pass();
      const worker = await agentStarts(j.id);
      provider.workerOf(worker.id)!.status = { state: "exited", exitCode: 137, reason: "was killed (SIGKILL, exit code 137)" };
      tick(INTERVAL_MS);
      await pass();
      const row = await job(j.id);
      assert.equal(row.state, "failed");
      assert.match(row.reason, /was killed \(SIGKILL, exit code 137\) before reporting a result$/);
    });
  });

  describe("orphans", () => {
    it("reaps a labelled resource that no worker owns, only once past the grace", async () => {
      const orphan = provider.addForeign("no-such-worker", clock.nowMs());
      tick(INTERVAL_MS);
      await pass();
      assert.deepEqual(provider.stopped, [], "not within the grace");
      tick(ORPHAN_GRACE_MS);
      await pass();
      assert.deepEqual(provider.stopped, [orphan]);
    });
  });

  describe("provider calls", () => {
    it("aborts a call to a hung provider at its time limit, and marks the provider unavailable instead of piling calls up", async () => {
      const jobs = [];
      for (let i = 0; i < 4; i++) jobs.push(await submit());
      await pass();
      for (const j of jobs) await agentStarts(j.id);
      for (let i = 0; i < 6; i++) provider.addForeign(`stray-${i}`, clock.nowMs()); // more than PROVIDER_CONCURRENCY resources to look at
      provider.hung.add("inspect");
      const inspects = () => provider.calls.filter((c) => c === "inspect").length;
      const inspectsBefore = inspects();
      tick(INTERVAL_MS);
      const running = reconciler.runOnce();
      await settleMicrotasks();
      assert.equal(inspects() - inspectsBefore, 4, "one inspect per live worker");
      clock.advance(PROVIDER_CALL_MS);
      await running;
      assert.equal(provider.aborted, 4, "every hung call was aborted, not left in flight");
      for (const j of jobs) assert.equal((await job(j.id)).state, "running", "a hung provider fails no job");
      const inspectsAfter = inspects();
      tick(INTERVAL_MS);
      await pass();
      assert.equal(inspects(), inspectsAfter, "a provider marked unavailable is not called again in the meantime");
    });

    it(`runs at most ${PROVIDER_CONCURRENCY} calls to one provider at once`, async () => {
      reconciler = makeReconciler({ providers: new Map([["fake", { provider, maxWorkers: 20, workerServerUrl: "http://x" }]]) });
      const jobs = [];
      for (let i = 0; i < 20; i++) jobs.push(await submit());
      await pass();
      for (const j of jobs) await agentStarts(j.id);
      provider.hung.add("inspect");
      const inspects = () => provider.calls.filter((c) => c === "inspect").length;
      const inspectsBefore = inspects();
      tick(INTERVAL_MS);
      const running = reconciler.runOnce();
      await settleMicrotasks();
      assert.equal(inspects() - inspectsBefore, PROVIDER_CONCURRENCY);
      clock.advance(PROVIDER_CALL_MS);
      await running;
      assert.equal(inspects() - inspectsBefore, PROVIDER_CONCURRENCY, "the queued calls failed fast once the provider was marked unavailable");
    });
  });

  describe("a down provider whose health check hangs", () => {
    it("holds each pass at most a second, is checked once at a time, and stays down until it answers", async () => {
      const j = await submit();
      provider.isUp = false;
      await pass(); // the start fails as a daemon that does not answer: the provider is marked down
      provider.hung.add("health");
      const healthChecks = () => provider.calls.filter((c) => c === "health").length;
      tick(PROVIDER_RETRY_MS);
      let isDone = false;
      const running = reconciler.runOnce().then(() => (isDone = true));
      await settleMicrotasks();
      assert.equal(healthChecks(), 1);
      assert.equal(isDone, false, "the pass waits for the re-check a moment");
      clock.advance(1_000);
      await running;
      assert.equal((await job(j.id)).state, "queued", "still down: its jobs wait");
      // The next pass, the check still hanging: not started again, and the pass is not held.
      tick(INTERVAL_MS);
      await reconciler.runOnce();
      assert.equal(healthChecks(), 1, "one re-check at a time");
      provider.hung.delete("health");
      provider.isUp = true;
      tick(PROVIDER_CALL_MS); // the hung check is aborted at its limit: still down, checked again later
      await settleMicrotasks();
      tick(PROVIDER_RETRY_MS);
      await pass();
      assert.equal(healthChecks(), 2);
      assert.equal((await job(j.id)).state, "provisioning", "up again: its job starts");
    });
  });

  describe("stops that hang (pods stuck terminating)", () => {
    it("hold no pass: the live workers are inspected while every stop slot is taken", async () => {
      reconciler = makeReconciler({ providers: new Map([["fake", { provider, maxWorkers: 20, workerServerUrl: "http://x" }]]) });
      const jobs = [];
      for (let i = 0; i < PROVIDER_CONCURRENCY + 4; i++) jobs.push(await submit());
      await pass();
      const workers = [];
      for (const j of jobs) workers.push(await agentStarts(j.id));
      let release!: () => void;
      provider.stopGate = new Promise<void>((resolve) => (release = resolve));
      // Enough workers to destroy to take every stop slot, with stops that do not return.
      for (const w of workers.slice(0, PROVIDER_CONCURRENCY)) await store.workers.transition(w.id, "destroying", { finished_at: clock.nowMs() });
      const inspects = () => provider.calls.filter((c) => c === "inspect").length;
      const inspectsBefore = inspects();
      tick(INTERVAL_MS);
      let isDone = false;
      const running = reconciler.runOnce().then(() => (isDone = true));
      await settleMicrotasks();
      assert.equal(provider.calls.filter((c) => c === "stop").length, PROVIDER_CONCURRENCY, "every stop slot is held");
      assert.equal(inspects() - inspectsBefore, 4, "each live worker was inspected, without waiting for the stops");
      assert.equal(isDone, true, "the pass ended with the stops still hanging");
      release();
      await running;
    });
  });

  describe("failures of the control plane's own steps", () => {
    it("logs a failed step and goes on with the rest of the pass", async () => {
      const j = await submit();
      const original = store.workers.listPage.bind(store.workers);
      let failures = 0;
      store.workers.listPage = async (...args) => {
        failures++;
        throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
      };
      await assert.doesNotReject(pass());
      assert.ok(failures > 0);
      assert.equal((await job(j.id)).state, "provisioning", "provision ran although destroy and deadlines failed");
      store.workers.listPage = original;
    });
  });

  describe("cancel", () => {
    it("cancels a job whose worker has not registered: the worker is destroyed and its token revoked", async () => {
      const j = await submit();
      await pass();
      const canceled = await reconciler.cancelJob(j.id, "canceled by user");
      assert.equal(canceled?.state, "canceled");
      const worker = await workerOf(j.id);
      assert.equal(worker.state, "destroying");
      const [token] = await store.tokens.list(1);
      assert.ok(token.expires_at <= clock.nowMs(), "the unused token was revoked");
      await pass();
      assert.equal((await store.workers.get(worker.id))?.state, "destroyed");
      assert.deepEqual(told, [], "no agent to tell");
    });

    it("tells a connected agent, and destroys its worker once the flush window has passed", async () => {
      const j = await submit();
      await pass();
      const worker = await agentStarts(j.id);
      await reconciler.cancelJob(j.id, "canceled by user");
      assert.deepEqual(told, [worker.id]);
      assert.equal((await store.workers.get(worker.id))?.state, "running", "the agent may flush and report first");
      tick(4000); // stop grace (1 s) + flush (3 s)
      await heartbeat(worker);
      await pass();
      await pass();
      assert.equal((await store.workers.get(worker.id))?.state, "destroyed");
    });

    it("answers null for a job that already ended", async () => {
      const j = await submit();
      await pass();
      await succeed(await agentStarts(j.id));
      assert.equal(await reconciler.cancelJob(j.id, "late"), null);
      assert.equal((await job(j.id)).state, "succeeded");
    });
  });
});

/** Lets every promise that can settle now settle (no timers involved). */
async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
}
