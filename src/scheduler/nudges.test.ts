/**
 * Which events run a reconcile pass at once (a nudge) rather than at the next timer pass. A pass
 * holds the control plane's event loop while it runs: one run for nothing just as a new agent's
 * Register arrives delays that agent's job. So a clean start nudges no pass, and a start that a
 * destroy waited on nudges one when it returns. Real SQLite store, fake provider, manual clock;
 * the timer pass is set far away, so every pass counted here is a nudged one.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { ManualClock } from "../core/clock.js";
import { newId } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { createMetrics } from "../metrics.js";
import type { ProviderResource, WorkerSpec } from "../providers/provider.js";
import { openDatabase } from "../store/database.js";
import type { JobRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { Reconciler } from "./reconciler.js";

/** A fake provider whose start() can be held after it recorded the resource (a slow daemon). */
class HeldStartProvider extends FakeProvider {
  hold: Promise<void> | null = null;
  override async start(spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource> {
    const resource = await super.start(spec, signal);
    if (this.hold) await this.hold;
    return resource;
  }
}

/** Lets the event loop turn until `done` holds (bounded: a failure, not a hang). */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !done(); i++) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(done(), what);
}

describe("Reconciler nudges", () => {
  let clock: ManualClock;
  let store: Store;
  let provider: HeldStartProvider;
  let reconciler: Reconciler;
  /** Passes begun and passes finished. */
  let passes: { begun: number; ended: number };

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    provider = new HeldStartProvider("fake", () => clock.nowMs());
    reconciler = new Reconciler({
      store,
      providers: new Map([["fake", { provider, maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      registrationTimeoutMs: 60_000,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: 3_600_000,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: { cancel: () => true },
    });
    passes = { begun: 0, ended: 0 };
    const runOnce = reconciler.runOnce.bind(reconciler);
    reconciler.runOnce = async (options) => {
      passes.begun++;
      try {
        await runOnce(options);
      } finally {
        passes.ended++;
      }
    };
  });

  afterEach(async () => {
    await reconciler.stop();
    await reconciler.settle();
    await store.close();
  });

  async function submit(): Promise<JobRow> {
    const spec = validateJobSpec({ command: ["true"], provider: "fake" }, { provider: "fake", timeoutSeconds: 600, providers: ["fake"] });
    return store.jobs.insert(newId(), spec, clock.nowMs());
  }

  /** Lets every pass and start in flight finish (but a held one), and any pass they nudged begin and finish. */
  async function quiesce(isStartHeld = false): Promise<void> {
    for (let round = 0; round < 3; round++) {
      if (!isStartHeld) await reconciler.settle();
      for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
      await until(() => passes.begun === passes.ended, "every pass begun has ended");
    }
  }

  it("runs no pass when a worker's start succeeds: the agent registers by itself", async () => {
    const job = await submit();
    reconciler.start(); // its first pass claims the job and starts its worker
    await until(() => provider.workers.size === 1, "the worker is started");
    await quiesce();
    assert.equal(passes.begun, 1, "only the pass that claimed the job");
    const [worker] = await store.workers.listOfJob(job.id);
    assert.equal(worker.state, "waiting");
    assert.equal(worker.start_owner, null, "the start is no longer in flight");
  });

  it("a submit's own reconcile hint runs no second pass; another replica's hint, or a reconnect's, runs one", async () => {
    reconciler.start();
    await quiesce();
    const before = passes.begun;
    // What scheduler/submit.ts does: nudge this pass, and hint the other replicas.
    await submit();
    reconciler.nudge();
    store.hint("reconcile");
    await until(() => provider.workers.size === 1, "the job's worker is started");
    await quiesce();
    assert.equal(passes.begun - before, 1, "one pass for the submit: its own hint came back and was skipped");

    await store.notifier.publish("reconcile", "another-replica");
    await until(() => passes.begun - before === 2, "another replica's hint runs a pass");
    await quiesce();
    await store.notifier.publish("reconcile", "");
    await until(() => passes.begun - before === 3, "a listener's reconnect (payload \"\") runs a pass");
    await quiesce();
  });

  it("runs a pass when a start fails, so the job's retry or end is seen at once", async () => {
    provider.nextStartError = new Error("no room");
    await submit();
    reconciler.start();
    await until(() => provider.calls.includes("start"), "the start was tried");
    await quiesce();
    assert.ok(passes.begun >= 2, "the claiming pass, then at least the one the failed start nudged");
  });

  it("destroys a worker whose attempt ended during its start, unseen by any destroy step, as soon as the start returns", async () => {
    let release = () => {};
    provider.hold = new Promise((resolve) => (release = resolve));
    const job = await submit();
    reconciler.start();
    await until(() => provider.workers.size === 1, "the worker is created and recorded, its start still in flight");
    await quiesce(true);
    // The job ends without a pass seeing it (as when a destroy step read the worker a moment before):
    // only the start's own end can tell that the worker must go now.
    assert.ok(await store.attempts.cancel(job.id, "canceled by the test", clock.nowMs(), clock.nowMs() + 1000));
    const begun = passes.begun;
    release();
    await until(() => provider.stopped.length === 1, "stopped right after its start returned, with no timer pass");
    assert.ok(passes.begun > begun, "the start's end ran a pass");
    await quiesce();
    const [worker] = await store.workers.listOfJob(job.id);
    assert.equal(worker.state, "destroyed");
  });

  it("destroys a worker whose job was canceled during its start as soon as the start returns", async () => {
    let release = () => {};
    provider.hold = new Promise((resolve) => (release = resolve));
    const job = await submit();
    reconciler.start();
    await until(() => provider.workers.size === 1, "the worker is created, its start still in flight");
    assert.ok(await reconciler.cancelJob(job.id, "canceled by the test"));
    await quiesce(true); // the cancel's passes find the worker destroying, its start in flight: they leave it
    assert.deepEqual(provider.stopped, [], "not stopped while its start is in flight");
    const begun = passes.begun;
    release();
    await until(() => provider.stopped.length === 1, "stopped right after its start returned, with no timer pass");
    assert.ok(passes.begun > begun, "the start's end ran a pass");
    await quiesce();
    const [worker] = await store.workers.listOfJob(job.id);
    assert.equal(worker.state, "destroyed");
  });
});
