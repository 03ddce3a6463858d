/**
 * Store contract, part three: retention (removing finished jobs with their rows, and the records
 * of removed jobs) and the meta table. Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { contractSpec, driveJob } from "./lifecycle.contract.js";
import type { Store } from "./store.js";

const HOUR_MS = 3_600_000;

export function describeRetentionQueries(makeStore: () => Promise<Store>): void {
  describe("retention", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    /** Rows of every table that belong to job `id`. */
    async function rowsOf(id: string) {
      return {
        job: (await store.jobs.get(id)) ? 1 : 0,
        workers: (await store.workers.listOfJob(id)).length,
        tokens: (await store.tokens.list(1000)).filter((t) => t.job_id === id).length,
        logs: (await store.logs.read(id, { attempt: 0, seq: 0 }, 1000)).length,
      };
    }

    it("removes a job that finished before the cutoff with its workers, tokens and log, and records it", async () => {
      const finishedAt = clock.nowMs();
      await driveJob(store, clock, "old", "destroyed", { attempts: 2 });
      assert.deepEqual(await rowsOf("old"), { job: 1, workers: 2, tokens: 2, logs: 2 });
      clock.advance(2 * HOUR_MS);
      assert.equal(await store.retention.removeFinished(clock.nowMs() - HOUR_MS, clock.nowMs(), 100), 1);
      assert.deepEqual(await rowsOf("old"), { job: 0, workers: 0, tokens: 0, logs: 0 });
      assert.deepEqual(await store.retention.getRemoved("old"), { id: "old", finished_at: finishedAt, removed_at: clock.nowMs() });
    });

    it("keeps a job that finished at or after the cutoff", async () => {
      await driveJob(store, clock, "recent", "destroyed");
      const cutoff = clock.nowMs();
      assert.equal(await store.retention.removeFinished(cutoff, cutoff + HOUR_MS, 100), 0);
      assert.deepEqual(await rowsOf("recent"), { job: 1, workers: 1, tokens: 1, logs: 1 });
      assert.equal(await store.retention.getRemoved("recent"), undefined);
    });

    it("never removes a job that has not finished, however old", async () => {
      await driveJob(store, clock, "queued", "queued");
      await driveJob(store, clock, "provisioning", "provisioning");
      await driveJob(store, clock, "running", "running");
      clock.advance(1000 * HOUR_MS);
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 100), 0);
      for (const id of ["queued", "provisioning", "running"]) assert.equal((await rowsOf(id)).job, 1, id);
    });

    it("never removes a finished job while one of its workers is not destroyed, nor that worker", async () => {
      const { workers } = await driveJob(store, clock, "ending", "ended", { end: "canceled" });
      assert.equal(workers[0].state, "destroying");
      clock.advance(2 * HOUR_MS);
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 100), 0);
      assert.deepEqual(await rowsOf("ending"), { job: 1, workers: 1, tokens: 1, logs: 1 });
      assert.ok(await store.workers.transition(workers[0].id, "destroyed", { destroyed_at: clock.nowMs() }));
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 100), 1, "once destroyed it goes");
    });

    it("removes every finished state and at most `limit` jobs per call, oldest finished first", async () => {
      for (const [i, end] of (["succeeded", "failed", "canceled", "timed_out", "succeeded"] as const).entries()) {
        await driveJob(store, clock, `job-${i}`, "destroyed", { end });
        clock.advance(1000);
      }
      const now = clock.nowMs() + HOUR_MS;
      assert.equal(await store.retention.removeFinished(now, now, 2), 2);
      assert.deepEqual((await store.jobs.list({ limit: 10 })).map((j) => j.id), ["job-4", "job-3", "job-2"]);
      assert.equal(await store.retention.removeFinished(now, now, 2), 2);
      assert.equal(await store.retention.removeFinished(now, now, 2), 1);
      assert.equal(await store.retention.removeFinished(now, now, 2), 0);
      assert.equal(await store.countRows("jobs"), 0);
      assert.equal(await store.countRows("removed_jobs"), 5);
    });

    it("frees a removed job's idempotency key: the key goes with its job", async () => {
      await driveJob(store, clock, "first", "destroyed", { spec: { idempotencyKey: "nightly-1" } });
      clock.advance(2 * HOUR_MS);
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 100), 1);
      const again = await store.jobs.insert("second", contractSpec({ idempotencyKey: "nightly-1" }), clock.nowMs());
      assert.equal(again.id, "second");
    });

    it("expireRemoved forgets records removed before the cutoff, at most `limit` per call, oldest first", async () => {
      for (let i = 0; i < 3; i++) {
        await driveJob(store, clock, `job-${i}`, "destroyed");
        clock.advance(1000);
        await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 100);
      }
      const lastRemovedAt = clock.nowMs();
      assert.equal(await store.retention.expireRemoved(lastRemovedAt, 1), 1);
      assert.equal(await store.retention.getRemoved("job-0"), undefined);
      assert.ok(await store.retention.getRemoved("job-1"));
      assert.equal(await store.retention.expireRemoved(lastRemovedAt, 10), 1, "the last one is not before the cutoff");
      assert.ok(await store.retention.getRemoved("job-2"));
    });
  });

  describe("meta", () => {
    let store: Store;

    beforeEach(async () => {
      store = await makeStore();
    });
    afterEach(async () => {
      await store.close();
    });

    it("stores a key's first value, keeps it against a later insertIfAbsent, and set replaces it", async () => {
      assert.equal(await store.meta.get("cluster_id"), undefined);
      assert.equal(await store.meta.insertIfAbsent("cluster_id", "c1"), "c1");
      assert.equal(await store.meta.insertIfAbsent("cluster_id", "c2"), "c1", "the first write wins");
      assert.equal(await store.meta.get("cluster_id"), "c1");
      await store.meta.set("cluster_id", "c3");
      assert.equal(await store.meta.get("cluster_id"), "c3");
    });
  });
}
