/**
 * Store contract, part two: the lookups and small writes of the workers table (and the batched
 * reads of jobs and tokens) that the reconcile loop and the API use. Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { driveJob } from "./lifecycle.contract.js";
import type { Store } from "./store.js";

export function describeWorkerQueries(makeStore: () => Promise<Store>): void {
  describe("workers, and batched reads", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    it("getMany reads jobs by id in one call, ignoring unknown and repeated ids", async () => {
      await driveJob(store, clock, "a", "queued");
      await driveJob(store, clock, "b", "queued");
      const found = await store.jobs.getMany(["a", "b", "a", "nope"]);
      assert.deepEqual([...found.keys()].sort(), ["a", "b"]);
      assert.equal(found.get("b")?.id, "b");
      assert.equal((await store.jobs.getMany([])).size, 0);
    });

    it("workers.getMany reads workers by id in one call", async () => {
      const a = await driveJob(store, clock, "a", "running");
      const b = await driveJob(store, clock, "b", "destroyed");
      const found = await store.workers.getMany([a.workers[0].id, b.workers[0].id, "nope"]);
      assert.deepEqual([...found.keys()].sort(), [a.workers[0].id, b.workers[0].id].sort());
      assert.equal(found.get(b.workers[0].id)?.state, "destroyed");
      assert.equal((await store.workers.getMany([])).size, 0);
    });

    it("listOfJob and listOfJobs give each job's workers by attempt; a job with none is absent", async () => {
      const retried = await driveJob(store, clock, "retried", "running", { attempts: 2 });
      const once = await driveJob(store, clock, "once", "destroyed");
      await driveJob(store, clock, "waiting", "queued");
      assert.deepEqual((await store.workers.listOfJob("retried")).map((w) => w.attempt), [1, 2]);
      const byJob = await store.workers.listOfJobs(["retried", "once", "waiting", "once"]);
      assert.deepEqual([...byJob.keys()].sort(), ["once", "retried"]);
      assert.deepEqual(byJob.get("retried")?.map((w) => w.id), retried.workers.map((w) => w.id));
      assert.deepEqual(byJob.get("once")?.map((w) => w.id), once.workers.map((w) => w.id));
      assert.equal((await store.workers.listOfJobs([])).size, 0);
    });

    it("list gives workers in the given states (all when null), newest first, up to the limit", async () => {
      await driveJob(store, clock, "old", "destroyed");
      clock.advance(1000);
      await driveJob(store, clock, "mid", "running");
      clock.advance(1000);
      await driveJob(store, clock, "new", "provisioning");
      assert.deepEqual((await store.workers.list(null, 10)).map((w) => w.job_id), ["new", "mid", "old"]);
      assert.deepEqual((await store.workers.list(["running", "provisioning"], 10)).map((w) => w.job_id), ["new", "mid"]);
      assert.deepEqual((await store.workers.list(null, 2)).map((w) => w.job_id), ["new", "mid"]);
    });

    it("findActiveByResource finds a worker still on its attempt by provider and resource, and no other", async () => {
      const { workers } = await driveJob(store, clock, "a", "running");
      const resource = workers[0].provider_resource_id!;
      assert.equal((await store.workers.findActiveByResource("local", resource))?.id, workers[0].id);
      assert.equal(await store.workers.findActiveByResource("docker", resource), undefined, "another provider's resource");
      assert.ok(await store.workers.transition(workers[0].id, "destroying"));
      assert.equal(await store.workers.findActiveByResource("local", resource), undefined, "no longer on its attempt");
    });

    it("countLiveByProvider counts workers that are not destroyed, per provider", async () => {
      await driveJob(store, clock, "l1", "running");
      await driveJob(store, clock, "l2", "ended");
      await driveJob(store, clock, "l3", "destroyed");
      await driveJob(store, clock, "d1", "provisioning", { spec: { provider: "docker" } });
      assert.deepEqual(Object.fromEntries(await store.workers.countLiveByProvider()), { local: 2, docker: 1 });
    });

    it("countLiveByProviderAndState counts workers that are not destroyed, per provider and state", async () => {
      await driveJob(store, clock, "l1", "running");
      await driveJob(store, clock, "l2", "running");
      await driveJob(store, clock, "l3", "ended");
      await driveJob(store, clock, "l4", "destroyed");
      await driveJob(store, clock, "d1", "provisioning", { spec: { provider: "docker" } });
      const rows = (await store.workers.countLiveByProviderAndState()).sort((x, y) => `${x.provider}${x.state}`.localeCompare(`${y.provider}${y.state}`));
      assert.deepEqual(rows, [
        { provider: "docker", state: "provisioning", count: 1 },
        { provider: "local", state: "destroying", count: 1 },
        { provider: "local", state: "running", count: 2 },
      ]);
    });

    it("recordHeartbeat, setFields and recordDestroyFailure write their fields and leave the state", async () => {
      const { workers } = await driveJob(store, clock, "a", "running");
      const id = workers[0].id;
      clock.advance(500);
      await store.workers.recordHeartbeat(id, clock.nowMs());
      await store.workers.setFields(id, { stop_deadline_ms: clock.nowMs() + 9000 });
      await store.workers.recordDestroyFailure(id, "daemon busy");
      await store.workers.recordDestroyFailure(id, "daemon gone");
      const after = await store.workers.get(id);
      assert.equal(after?.state, "running");
      assert.equal(after?.last_heartbeat_ms, clock.nowMs());
      assert.equal(after?.stop_deadline_ms, clock.nowMs() + 9000);
      assert.equal(after?.destroy_attempts, 2);
      assert.equal(after?.last_error, "daemon gone");
    });

    it("tokens.list gives the newest tokens first, up to the limit", async () => {
      await driveJob(store, clock, "old", "destroyed");
      clock.advance(1000);
      await driveJob(store, clock, "new", "provisioning");
      assert.deepEqual((await store.tokens.list(10)).map((t) => t.job_id), ["new", "old"]);
      assert.deepEqual((await store.tokens.list(1)).map((t) => t.job_id), ["new"]);
    });
  });
}
