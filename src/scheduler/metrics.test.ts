/**
 * The metrics the reconcile loop records, with a fake provider, a manual clock and direct passes:
 * the database gauges come from the leader only (a follower has none, and after a handover the
 * new leader has them and the old one not), and passes, steps, provider calls and the provision
 * phase are counted, a failing step too.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { value } from "../../test/fixtures/prometheus-text.js";
import { ManualClock } from "../core/clock.js";
import { newId } from "../core/ids.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { createMetrics, type Metrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import type { JobRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { BEAT_INTERVAL_MS } from "./liveness.js";
import { Reconciler } from "./reconciler.js";

const LEASE_MS = 15_000;

describe("metrics of the reconcile loop", () => {
  let clock: ManualClock;
  let store: Store;
  let replicas: Reconciler[];

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    replicas = [];
  });
  afterEach(async () => {
    for (const r of replicas) await r.settle();
    await store.close().catch(() => {}); // one test closes it itself
  });

  function replica(id: string, provider: FakeProvider, metrics: Metrics, maxWorkers = 1): Reconciler {
    const r = new Reconciler({
      store,
      providers: new Map([[provider.name, { provider, maxWorkers, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics,
      registrationTimeoutMs: 60_000,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: 2_000,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: { cancel: () => false },
      random: () => 0.5,
      replica: { replicaId: id, nodeId: "node-a" },
      leaderLeaseMs: LEASE_MS,
    });
    replicas.push(r);
    return r;
  }

  async function pass(r: Reconciler): Promise<void> {
    await r.runOnce();
    await r.settle();
  }

  async function submit(spec: Partial<JobSpec> = {}): Promise<JobRow> {
    const valid = validateJobSpec({ command: ["true"], provider: "fake", ...spec }, { provider: "fake", timeoutSeconds: 600, providers: ["fake"] });
    const row = await store.jobs.insert(newId(), valid, clock.nowMs());
    clock.advance(1);
    return row;
  }

  const scrape = (m: Metrics) => m.registry.metrics();

  it("exports the queue and worker gauges on the leader only, and on the new leader after a handover", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const metricsA = createMetrics();
    const metricsB = createMetrics();
    const a = replica("a", provider, metricsA);
    const b = replica("b", provider, metricsB);
    await submit({ priority: 5 });
    await submit();
    await submit();
    await submit({ priority: -3 });
    await submit({ delaySeconds: 60 });
    await pass(a); // the leader: it claims the priority 5 job for the one worker there is room for
    await pass(b);

    let textA = await scrape(metricsA);
    assert.equal(value(textA, "hodei_leader"), 1);
    assert.equal(value(textA, "hodei_queue_depth", { provider: "fake", priority: "0" }), 2);
    assert.equal(value(textA, "hodei_queue_depth", { provider: "fake", priority: "-3" }), 1);
    assert.equal(value(textA, "hodei_queue_depth", { provider: "fake", priority: "5" }), undefined, "the claimed job is no longer queued");
    assert.equal(value(textA, "hodei_queue_delayed", { provider: "fake" }), 1, "the job not yet due");
    assert.equal(value(textA, "hodei_workers", { provider: "fake", state: "waiting" }), 1);
    assert.equal(value(textA, "hodei_workers", { provider: "fake", state: "running" }), 0);
    assert.equal(value(textA, "hodei_live_workers", { provider: "fake" }), 1);
    assert.equal(value(textA, "hodei_provider_up", { provider: "fake" }), 1);

    let textB = await scrape(metricsB);
    assert.equal(value(textB, "hodei_leader"), 0);
    for (const name of ["hodei_queue_depth", "hodei_queue_delayed", "hodei_workers", "hodei_live_workers"]) {
      assert.equal(value(textB, name), undefined, `a follower exports no ${name}`);
    }
    assert.equal(value(textB, "hodei_provider_up", { provider: "fake" }), 1, "its own view of the providers it does export");

    // a stops renewing (it froze, or died); b takes the lease once a's has expired. A minute on, the delayed job is due too.
    for (let left = 60_000; left > 0; left -= BEAT_INTERVAL_MS) {
      clock.advance(BEAT_INTERVAL_MS);
      b.liveness.beat();
    }
    assert.equal(await b.leadership.renew(), true);
    textA = await scrape(metricsA);
    textB = await scrape(metricsB);
    assert.equal(value(textA, "hodei_queue_depth"), undefined, "the old leader's gauges are gone");
    assert.equal(value(textA, "hodei_workers"), undefined);
    assert.equal(value(textB, "hodei_queue_depth", { provider: "fake" }), 4);
    assert.equal(value(textB, "hodei_queue_delayed", { provider: "fake" }), 0, "the delayed job is due now");
    assert.equal(value(textB, "hodei_queue_depth", { provider: "fake", priority: "0" }), 3);
    assert.equal(value(textB, "hodei_workers", { provider: "fake", state: "waiting" }), 1);
  });

  it("counts passes, times each step, and times and counts provider calls and the provision phase", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const metrics = createMetrics();
    const r = replica("a", provider, metrics, 4);
    await submit();
    await pass(r);
    await pass(r);
    const text = await scrape(metrics);
    assert.equal(value(text, "hodei_reconcile_pass_seconds_count"), 2);
    for (const step of ["leader_lease", "destroy", "queue_deadlines", "provision", "deadlines", "inspect", "reap"]) {
      assert.ok((value(text, "hodei_reconcile_step_seconds_count", { step }) ?? 0) >= 1, `step ${step} is timed`);
    }
    assert.equal(value(text, "hodei_reconcile_step_failures_total"), undefined, "no step failed");
    assert.equal(value(text, "hodei_provider_call_seconds_count", { provider: "fake", call: "start" }), 1);
    assert.ok((value(text, "hodei_provider_call_seconds_count", { provider: "fake", call: "list" }) ?? 0) >= 1, "the reap lists resources");
    assert.equal(value(text, "hodei_worker_phase_seconds_count", { provider: "fake", phase: "provision" }), 1);
    assert.equal(value(text, "hodei_workers_started_total", { provider: "fake" }), 1);

    provider.isUp = false; // the daemon stops answering: the next call fails
    const second = await submit();
    await pass(r);
    const after = await scrape(metrics);
    // The first call to find the daemon down (the new worker's start, or the inspect of the first one) fails; later ones are not tried.
    assert.equal(value(after, "hodei_provider_call_errors_total", { provider: "fake" }), 1);
    assert.equal(value(after, "hodei_provider_up", { provider: "fake" }), 0, "marked unavailable");
    assert.equal((await store.jobs.get(second.id))?.state, "queued", "the job waits for the provider");
    const waiting = (value(after, "hodei_queue_depth", { provider: "fake" }) ?? 0) + (value(after, "hodei_queue_delayed", { provider: "fake" }) ?? 0);
    assert.equal(waiting, 1, "counted in the queue (due, or in its backoff)");
  });

  it("counts the jobs that end and the run time of those that ran", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const metrics = createMetrics();
    const r = replica("a", provider, metrics, 4);
    const queued = await submit({ delaySeconds: 60 });
    await pass(r);
    assert.ok(await r.cancelJob(queued.id, "not needed"));
    const text = await scrape(metrics);
    assert.equal(value(text, "hodei_jobs_finished_total", { provider: "fake", state: "canceled" }), 1);
    assert.equal(value(text, "hodei_job_run_seconds_count"), undefined, "a job that never ran has no run time");
  });

  it("counts each step that fails (the database is gone) and still answers the scrape, without stale counts", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const metrics = createMetrics();
    const r = replica("a", provider, metrics);
    await pass(r);
    await store.close();
    await pass(r);
    const text = await scrape(metrics);
    // Still the leader (its lease has not expired): every step that reads or writes the database fails.
    for (const step of ["destroy", "queue_deadlines", "provision", "deadlines"]) {
      assert.equal(value(text, "hodei_reconcile_step_failures_total", { step }), 1, `step ${step} failed once`);
    }
    assert.equal(value(text, "hodei_reconcile_pass_seconds_count"), 2);
    assert.equal(value(text, "hodei_queue_depth"), undefined, "no stale counts");
  });
});
