/**
 * The reaper through a whole reconcile pass (direct runOnce, a hand-moved clock): a labelled
 * resource that no live worker row owns is stopped once past the grace, an owned one never, and
 * the worker rows of one provider's resources are read in one query however many there are.
 * Token secrets (the listTokenSecrets capability) go once their token is spent, or past the grace
 * once nothing owns them; one whose token may still be redeemed stays.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { createMetrics } from "../metrics.js";
import type { ProviderResource, TokenSecret, WorkerProvider } from "../providers/provider.js";
import { openDatabase } from "../store/database.js";
import { driveJob } from "../store/lifecycle.contract.js";
import { Store } from "../store/store.js";
import { Reconciler } from "./reconciler.js";

const GRACE_MS = 30_000;

describe("reap orphans", () => {
  let store: Store;
  let clock: ManualClock;
  const statements: string[] = [];
  let resources: ProviderResource[];
  let stopped: string[];

  const provider: WorkerProvider = {
    name: "local",
    resourceType: "process_id",
    start: () => Promise.reject(new Error("not in this test")),
    inspect: () => Promise.resolve({ state: "running" }),
    stop: async (resourceId) => void stopped.push(resourceId),
    list: async () => resources,
    health: async () => ({ healthy: true, detail: "" }),
    close: async () => {},
  };

  beforeEach(async () => {
    const { db, kind } = await openDatabase("sqlite::memory:", { log: (event) => void statements.push(event.query.sql) });
    store = new Store(db, kind);
    clock = new ManualClock();
    stopped = [];
  });
  afterEach(async () => {
    await store.close();
  });

  function reconciler(withProvider: WorkerProvider = provider): Reconciler {
    return new Reconciler({
      store,
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      providers: new Map([["local", { provider: withProvider, maxWorkers: 0, workerServerUrl: "" }]]),
      registrationTimeoutMs: 3_600_000,
      heartbeatTimeoutMs: 3_600_000,
      reconcileIntervalMs: 1000,
      orphanGraceMs: GRACE_MS,
      stopGraceMs: 0,
      agents: { cancel: () => false },
    });
  }

  it("stops resources no live worker owns once past the grace, never an owned one, with one worker query", async () => {
    const live = await driveJob(store, clock, "live", "running");
    const done = await driveJob(store, clock, "done", "destroyed");
    const at = clock.nowMs();
    const ownedId = live.workers[0].provider_resource_id!;
    resources = [
      { resourceId: ownedId, resourceType: "process_id", workerId: live.workers[0].id, createdAtMs: at },
      { resourceId: "pid-of-destroyed", resourceType: "process_id", workerId: done.workers[0].id, createdAtMs: at },
      { resourceId: "pid-unknown", resourceType: "process_id", workerId: "never-recorded", createdAtMs: at },
      { resourceId: "pid-young", resourceType: "process_id", workerId: "also-unknown", createdAtMs: at + GRACE_MS },
    ];
    clock.advance(GRACE_MS);
    statements.length = 0;
    const r = reconciler();
    await r.runOnce();
    await r.settle();
    assert.deepEqual(stopped.sort(), ["pid-of-destroyed", "pid-unknown"], "the young orphan waits for its grace; the owned resource stays");
    assert.equal(statements.filter((sql) => /^select \* from "workers" where "id" in/.test(sql)).length, 1);
  });

  it("stops orphans off the pass: a pass ends while their stops hang, and the next one starts no second stop", async () => {
    const at = clock.nowMs();
    resources = ["pid-a", "pid-b"].map((resourceId) => ({ resourceId, resourceType: "process_id", workerId: `never-recorded-${resourceId}`, createdAtMs: at }));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const hanging: WorkerProvider = {
      ...provider,
      stop: async (resourceId) => {
        stopped.push(resourceId);
        await released;
      },
    };
    clock.advance(GRACE_MS);
    const r = reconciler(hanging);
    const timedOut = Symbol("timed out");
    const within = async <T>(p: Promise<T>) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([p, new Promise<typeof timedOut>((resolve) => (timer = setTimeout(() => resolve(timedOut), 2000)))]);
      } finally {
        clearTimeout(timer);
      }
    };
    assert.notEqual(await within(r.runOnce()), timedOut, "the pass ended while both stops hang");
    assert.deepEqual(stopped.sort(), ["pid-a", "pid-b"], "both stops started at once, not one after the other");
    clock.advance(1000); // The next full pass (reconcileIntervalMs), well within the stops' time limit.
    assert.notEqual(await within(r.runOnce()), timedOut);
    assert.deepEqual(stopped.sort(), ["pid-a", "pid-b"], "a stop in flight is not started again");
    release();
    await r.settle();
    clock.advance(1000);
    await r.runOnce();
    await r.settle();
    assert.deepEqual(stopped.sort(), ["pid-a", "pid-a", "pid-b", "pid-b"], "once settled, a resource still listed is stopped again");
  });

  it("deletes token secrets whose token is spent at once, unowned ones past the grace, and never one still waiting to be redeemed", async () => {
    const waitingJob = await driveJob(store, clock, "waiting", "provisioning");
    const waiting = waitingJob.workers[0];
    await store.attempts.recordProvisioned(waiting.id, "pod-waiting", "pod_name", clock.nowMs());
    const lostPodJob = await driveJob(store, clock, "lost-pod", "provisioning");
    await store.attempts.recordProvisioned(lostPodJob.workers[0].id, "pod-gone", "pod_name", clock.nowMs());
    const running = (await driveJob(store, clock, "running", "running")).workers[0];
    const done = (await driveJob(store, clock, "done", "destroyed")).workers[0];
    const at = clock.nowMs();
    const young = at + GRACE_MS;
    resources = [
      { resourceId: "pod-waiting", resourceType: "pod_name", workerId: waiting.id, createdAtMs: at },
      { resourceId: running.provider_resource_id!, resourceType: "pod_name", workerId: running.id, createdAtMs: at },
    ];
    const secrets: TokenSecret[] = [
      { name: "waiting", workerId: waiting.id, resourceId: "pod-waiting", createdAtMs: at },
      { name: "registered-young", workerId: running.id, resourceId: running.provider_resource_id!, createdAtMs: young },
      { name: "destroyed", workerId: done.id, resourceId: "pod-of-done", createdAtMs: young },
      { name: "pod-gone", workerId: lostPodJob.workers[0].id, resourceId: "pod-gone", createdAtMs: at },
      { name: "no-worker", workerId: "never-recorded", resourceId: "pod-x", createdAtMs: at },
      { name: "no-worker-young", workerId: "also-never-recorded", resourceId: "pod-y", createdAtMs: young },
    ];
    const deleted: string[] = [];
    const withSecrets: WorkerProvider = {
      ...provider,
      listTokenSecrets: async () => secrets,
      deleteTokenSecret: async (name) => void deleted.push(name),
    };
    clock.advance(GRACE_MS);
    await reconciler(withSecrets).runOnce();
    assert.deepEqual(deleted.sort(), ["destroyed", "no-worker", "pod-gone", "registered-young"]);
    assert.deepEqual(stopped, [], "no resource was an orphan");
  });
});
