/**
 * The reaper through a whole reconcile pass (direct runOnce, a hand-moved clock): a labelled
 * resource that no live worker row owns is stopped once past the grace, an owned one never, and
 * the worker rows of one provider's resources are read in one query however many there are.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { createMetrics } from "../metrics.js";
import type { ProviderResource, WorkerProvider } from "../providers/provider.js";
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

  function reconciler(): Reconciler {
    return new Reconciler({
      store,
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      providers: new Map([["local", { provider, maxWorkers: 0, workerServerUrl: "" }]]),
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
    await reconciler().runOnce();
    assert.deepEqual(stopped.sort(), ["pid-of-destroyed", "pid-unknown"], "the young orphan waits for its grace; the owned resource stays");
    assert.equal(statements.filter((sql) => /^select \* from "workers" where "id" in/.test(sql)).length, 1);
  });
});
