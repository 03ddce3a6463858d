/**
 * A worker its provider reports as waiting for something outside it (an unschedulable pod, with
 * the scheduler's message): the job stays provisioning with that message as its reason, the worker
 * keeps its whole registration time for when it does run, and the provider's pending timeout ends
 * the attempt, counted in present time. Real SQLite store, fake provider, manual clock: no sleeps.
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
import { Reconciler } from "./reconciler.js";

const REGISTRATION_MS = 60_000;
const PENDING_TIMEOUT_MS = 10 * 60_000;
const INTERVAL_MS = 2_000;
const UNSCHEDULABLE = "the scheduler cannot place the pod: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";

describe("a worker that waits for its provider (pending with a reason)", () => {
  let clock: ManualClock;
  let store: Store;
  let provider: FakeProvider;
  let reconciler: Reconciler;

  function makeReconciler(pendingTimeoutMs: number): Reconciler {
    return new Reconciler({
      store,
      providers: new Map([["fake", { provider, maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1", pendingTimeoutMs }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      registrationTimeoutMs: REGISTRATION_MS,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: INTERVAL_MS,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: { cancel: () => true },
    });
  }

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    provider = new FakeProvider("fake", () => clock.nowMs());
    reconciler = makeReconciler(PENDING_TIMEOUT_MS);
  });

  afterEach(async () => {
    await reconciler.settle();
    await store.close();
  });

  async function pass(): Promise<void> {
    await reconciler.runOnce();
    await reconciler.settle();
  }

  /** The control plane running for `ms`: its liveness timer beating, a full pass every interval. */
  async function runFor(ms: number): Promise<void> {
    for (let left = ms; left > 0; ) {
      for (let beat = 0; beat < INTERVAL_MS && left > 0; beat += BEAT_INTERVAL_MS, left -= BEAT_INTERVAL_MS) {
        clock.advance(BEAT_INTERVAL_MS);
        reconciler.liveness.beat();
      }
      await pass();
    }
  }

  async function submit(overrides: Partial<JobSpec> = {}): Promise<JobRow> {
    const spec = validateJobSpec({ command: ["true"], provider: "fake", ...overrides }, { provider: "fake", timeoutSeconds: 600, providers: ["fake"] });
    return store.jobs.insert(newId(), spec, clock.nowMs());
  }

  async function job(id: string): Promise<JobRow> {
    return (await store.jobs.get(id))!;
  }

  async function workerOf(jobId: string): Promise<WorkerRow> {
    return (await store.workers.listOfJob(jobId)).at(-1)!;
  }

  /** Submits a job, starts its worker and has the provider say it cannot run yet. */
  async function pendingJob(overrides: Partial<JobSpec> = {}): Promise<{ job: JobRow; worker: WorkerRow }> {
    const j = await submit(overrides);
    await pass();
    const worker = await workerOf(j.id);
    assert.equal(worker.state, "waiting");
    provider.workerOf(worker.id)!.status = { state: "pending", detail: UNSCHEDULABLE };
    await runFor(INTERVAL_MS);
    return { job: j, worker };
  }

  it("keeps the job provisioning past the registration deadline, with the provider's message as its reason", async () => {
    const { job: j, worker } = await pendingJob();
    await runFor(5 * REGISTRATION_MS);
    const row = await job(j.id);
    assert.equal(row.state, "provisioning");
    assert.equal(row.reason, `waiting: ${UNSCHEDULABLE}`);
    const w = (await store.workers.get(worker.id))!;
    assert.equal(w.state, "waiting");
    assert.equal(w.pending_reason, UNSCHEDULABLE);
    assert.ok(w.pending_since_ms !== null && w.pending_since_ms <= worker.created_at + 2 * INTERVAL_MS, "since when is kept from the first report");
    const [token] = await store.tokens.list(1);
    assert.equal(token.expires_at, w.registration_deadline_ms, "the token's expiry follows the worker's deadline");
    assert.ok(token.expires_at >= clock.nowMs() + REGISTRATION_MS - INTERVAL_MS, "its whole registration time is still ahead");
  });

  it("lets the worker register once the provider no longer says it waits, and clears the job's reason", async () => {
    const { job: j, worker } = await pendingJob();
    await runFor(5 * REGISTRATION_MS);
    const fake = provider.workerOf(worker.id)!;
    fake.status = { state: "running" };
    await runFor(INTERVAL_MS);
    assert.equal((await job(j.id)).reason, "", "the waiting reason is gone");
    assert.equal((await store.workers.get(worker.id))!.pending_since_ms, null);
    await runFor(REGISTRATION_MS - 2 * INTERVAL_MS);
    assert.ok(await store.tokens.consume(hashToken(fake.spec.otpToken), clock.nowMs()), "the agent redeems its token after the wait");
    assert.ok(await store.attempts.register(worker.id, hashToken("session"), "host", clock.nowMs()));
    assert.equal(await store.attempts.dispatch((await store.workers.get(worker.id))!, clock.nowMs()), true);
    assert.equal((await job(j.id)).state, "running");
  });

  it("still fails by the registration deadline a worker that was scheduled but never registers", async () => {
    const { job: j, worker } = await pendingJob();
    await runFor(3 * REGISTRATION_MS);
    provider.workerOf(worker.id)!.status = { state: "running" };
    await runFor(REGISTRATION_MS + 2 * INTERVAL_MS);
    const row = await job(j.id);
    assert.equal(row.state, "failed");
    assert.match(row.reason, /did not register within 60s/);
  });

  it("fails the attempt with the provider's message once the pending timeout has passed, without a retry", async () => {
    const { job: j } = await pendingJob({ maxAttempts: 3 });
    await runFor(PENDING_TIMEOUT_MS - 4 * INTERVAL_MS);
    assert.equal((await job(j.id)).state, "provisioning", "not before the timeout");
    await runFor(4 * INTERVAL_MS);
    const row = await job(j.id);
    assert.equal(row.state, "failed");
    assert.equal(row.reason, `the worker could not run within 10m (the provider's pending timeout): ${UNSCHEDULABLE}`);
    assert.equal(row.attempts, 1, "a new worker would wait for the same thing: not retried");
    await pass();
    assert.equal(provider.workers.size, 0, "its worker is destroyed");
  });

  it("counts present time only: the control plane's own absence does not end the wait", async () => {
    const { job: j } = await pendingJob();
    await runFor(60_000);
    clock.advance(PENDING_TIMEOUT_MS); // frozen: no beat, no pass
    await runFor(INTERVAL_MS);
    assert.equal((await job(j.id)).state, "provisioning");
    await runFor(PENDING_TIMEOUT_MS);
    assert.equal((await job(j.id)).state, "failed");
  });

  it("with no pending timeout, waits until the job is canceled", async () => {
    reconciler = makeReconciler(0);
    const { job: j, worker } = await pendingJob();
    await runFor(3 * PENDING_TIMEOUT_MS);
    assert.equal((await job(j.id)).state, "provisioning");
    assert.ok(await reconciler.cancelJob(j.id, "canceled by user"));
    await pass();
    assert.equal((await store.workers.get(worker.id))!.state, "destroyed");
  });
});
