/**
 * The queue's side of the reconcile pass, on a real SQLite store with the fake provider and a manual
 * clock: priority order at capacity, run-at, and queue timeouts (at capacity, with the provider
 * unavailable, with the worker still starting, and never for the control plane's own absence). No
 * test sleeps: time moves by clock.advance and passes run by runOnce().
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { ManualClock } from "../core/clock.js";
import { newId } from "../core/ids.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { hashToken } from "../core/token.js";
import { createMetrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { BEAT_INTERVAL_MS } from "./liveness.js";
import { PROVIDER_RETRY_MS } from "./provider-health.js";
import { Reconciler, type ReconcilerOptions } from "./reconciler.js";

describe("the queue in the reconcile pass", () => {
  let clock: ManualClock;
  let store: Store;
  let provider: FakeProvider;
  let reconciler: Reconciler;
  let told: string[];

  function makeReconciler(overrides: Partial<ReconcilerOptions> = {}): Reconciler {
    return new Reconciler({
      store,
      providers: new Map([["fake", { provider, maxWorkers: 1, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      registrationTimeoutMs: 60_000,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: 2000,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: {
        cancel(workerId) {
          told.push(workerId);
          return true;
        },
      },
      ...overrides,
    });
  }

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    provider = new FakeProvider("fake", () => clock.nowMs());
    told = [];
    reconciler = makeReconciler();
  });

  afterEach(async () => {
    await reconciler.settle();
    await store.close();
  });

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
    const spec = validateJobSpec({ command: ["true"], provider: "fake", ...overrides }, { provider: "fake", timeoutSeconds: 600, providers: ["fake"], nowMs: clock.nowMs() });
    const row = await store.jobs.insert(newId(), spec, clock.nowMs());
    clock.advance(1);
    return row;
  }

  async function job(id: string): Promise<JobRow> {
    const row = await store.jobs.get(id);
    assert.ok(row, `job ${id}`);
    return row;
  }

  async function workerOf(jobId: string): Promise<WorkerRow> {
    const worker = (await store.workers.listOfJob(jobId)).at(-1);
    assert.ok(worker, `a worker of job ${jobId}`);
    return worker;
  }

  /** The agent of the job's latest worker registers and takes the job. */
  async function agentStarts(jobId: string): Promise<WorkerRow> {
    const worker = await workerOf(jobId);
    const started = provider.workerOf(worker.id);
    assert.ok(started, "the provider started the worker");
    assert.ok(await store.tokens.consume(hashToken(started.spec.otpToken), clock.nowMs()));
    assert.ok(await store.attempts.register(worker.id, hashToken(`session-${worker.id}`), "host", clock.nowMs()));
    assert.equal(await store.attempts.dispatch((await store.workers.get(worker.id))!, clock.nowMs()), true);
    return (await store.workers.get(worker.id))!;
  }

  /** The job's worker finishes it; the next passes destroy the worker and free its slot. */
  async function finish(jobId: string): Promise<void> {
    const worker = await agentStarts(jobId);
    assert.ok(await store.attempts.end(worker, "succeeded", clock.nowMs(), { exit_code: 0, finished_at: clock.nowMs() }, ""));
    await pass(); // destroys it (provision comes first in a pass: its slot is still taken then)
    await pass(); // claims the next job (the destroy's own nudge, in a running reconciler)
  }

  describe("priority", () => {
    it("with capacity 1, runs the highest priority first, and one priority in submit order", async () => {
      const blocker = await submit();
      await pass();
      assert.equal((await job(blocker.id)).state, "provisioning");
      const low = await submit({ priority: -5 });
      const normal1 = await submit();
      const high = await submit({ priority: 10 });
      const normal2 = await submit();
      const started: string[] = [];
      let current = blocker.id;
      for (let i = 0; i < 4; i++) {
        await finish(current);
        if ((await job(current)).state !== "succeeded") assert.fail(`${current} should have finished`);
        const provisioning = [];
        for (const j of [low, normal1, high, normal2]) if ((await job(j.id)).state === "provisioning") provisioning.push(j.id);
        assert.equal(provisioning.length, 1, "capacity 1: one job at a time");
        current = provisioning[0];
        started.push(current);
      }
      assert.deepEqual(started, [high.id, normal1.id, normal2.id, low.id]);
    });
  });

  describe("run-at", () => {
    it("starts a job no earlier than its run-at", async () => {
      const later = await submit({ delaySeconds: 30 });
      await pass();
      assert.equal((await job(later.id)).state, "queued");
      tick(29_000);
      await pass();
      assert.equal((await job(later.id)).state, "queued", "not before its run-at");
      tick(1000);
      await pass();
      assert.equal((await job(later.id)).state, "provisioning");
    });
  });

  describe("queue timeout", () => {
    it("ends a job that waited past its queue timeout at capacity as timed_out, saying it never started and why", async () => {
      const blocker = await submit();
      await pass();
      await agentStarts(blocker.id);
      const waiting = await submit({ queueTimeoutSeconds: 10 });
      tick(9_000);
      await pass();
      assert.equal((await job(waiting.id)).state, "queued", "not before its queue timeout");
      tick(1_000);
      await pass();
      const ended = await job(waiting.id);
      assert.equal(ended.state, "timed_out");
      assert.equal(ended.reason, "never started within its queue timeout of 10s: fake was at capacity (1 of 1 workers busy)");
      assert.equal(ended.finished_at, clock.nowMs());
      assert.equal(ended.attempts, 0, "no attempt was made");
      assert.equal((await job(blocker.id)).state, "running", "the running job is untouched");
    });

    it("counts the queue timeout from the run-at, not from the submission", async () => {
      const blocker = await submit();
      await pass();
      await agentStarts(blocker.id);
      const scheduled = await submit({ delaySeconds: 60, queueTimeoutSeconds: 10 });
      tick(65_000);
      await pass();
      assert.equal((await job(scheduled.id)).state, "queued", "5 s after its run-at");
      tick(5_000);
      await pass();
      assert.equal((await job(scheduled.id)).state, "timed_out");
    });

    it("says the provider was unavailable, with its health detail", async () => {
      provider.isUp = false;
      const j = await submit({ queueTimeoutSeconds: 10 });
      await pass(); // its start fails: the provider is marked unavailable, the job waits uncounted
      for (let t = 0; t < 10_000; t += PROVIDER_RETRY_MS) {
        tick(PROVIDER_RETRY_MS);
        await pass();
      }
      const ended = await job(j.id);
      assert.equal(ended.state, "timed_out");
      assert.match(ended.reason, /^never started within its queue timeout of 10s: fake was unavailable \(fake daemon down\)$/);
    });

    it("ends a job whose worker was still starting: the worker is destroyed and its token revoked", async () => {
      const j = await submit({ queueTimeoutSeconds: 10 });
      await pass();
      const worker = await workerOf(j.id);
      assert.equal(worker.state, "waiting", "started, its agent not registered yet");
      tick(10_000);
      await pass();
      const ended = await job(j.id);
      assert.equal(ended.state, "timed_out");
      assert.match(ended.reason, /^never started within its queue timeout of 10s: its worker on fake was still starting \(worker waiting\)$/);
      await pass();
      assert.equal((await store.workers.get(worker.id))?.state, "destroyed");
      assert.deepEqual(provider.stopped, [worker.provider_resource_id]);
      const [token] = await store.tokens.list(1);
      assert.equal(token.consumed_at, null);
      assert.ok(token.expires_at <= clock.nowMs(), "the unused token was revoked");
    });

    it("tells a registered agent whose job never started to stop", async () => {
      const j = await submit({ queueTimeoutSeconds: 10 });
      await pass();
      const worker = await workerOf(j.id);
      const started = provider.workerOf(worker.id)!;
      assert.ok(await store.tokens.consume(hashToken(started.spec.otpToken), clock.nowMs()));
      assert.ok(await store.attempts.register(worker.id, hashToken("session"), "host", clock.nowMs()));
      tick(10_000);
      await pass();
      assert.equal((await job(j.id)).state, "timed_out");
      assert.deepEqual(told, [worker.id]);
      assert.equal(await store.attempts.dispatch((await store.workers.get(worker.id))!, clock.nowMs()), false, "it is never dispatched");
    });

    it("never times out a job that started, nor one with no queue timeout", async () => {
      const started = await submit({ queueTimeoutSeconds: 10 });
      const forever = await submit();
      reconciler = makeReconciler({ providers: new Map([["fake", { provider, maxWorkers: 1, workerServerUrl: "http://x" }]]) });
      await pass();
      const worker = await agentStarts(started.id);
      for (let i = 0; i < 6; i++) {
        tick(5_000);
        await store.workers.recordHeartbeat(worker.id, clock.nowMs());
        await pass();
      }
      assert.equal((await job(started.id)).state, "running");
      assert.equal((await job(forever.id)).state, "queued");
    });

    it("says so when the job's provider is not enabled on this server any more", async () => {
      const j = await submit({ queueTimeoutSeconds: 5 });
      reconciler = makeReconciler({ providers: new Map([["other", { provider: new FakeProvider("other"), maxWorkers: 1, workerServerUrl: "http://x" }]]) });
      tick(5_000);
      await pass();
      const ended = await job(j.id);
      assert.equal(ended.state, "timed_out");
      assert.equal(ended.reason, "never started within its queue timeout of 5s: fake is not enabled on this server");
    });

    it("does not count the control plane's own absence against a queued job", async () => {
      const blocker = await submit();
      await pass();
      await agentStarts(blocker.id);
      const waiting = await submit({ queueTimeoutSeconds: 10 });
      tick(4_000);
      clock.advance(60_000); // frozen (SIGSTOP): no beat, no pass
      await pass();
      assert.equal((await job(waiting.id)).state, "queued", "only 4 s of present time");
      tick(6_000);
      await pass();
      assert.equal((await job(waiting.id)).state, "timed_out");
    });
  });
});
