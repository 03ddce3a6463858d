/**
 * The retention step, on a real store with a hand-moved clock and direct calls of the step (never
 * a sleep): what is kept, what goes with its rows, how much one pass does, and when the records of
 * removed jobs are forgotten.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { openDatabase } from "../store/database.js";
import { driveJob } from "../store/lifecycle.contract.js";
import { Store } from "../store/store.js";
import { REMOVED_RECORD_FACTOR, removeExpiredJobs } from "./retention.js";

const DAY_MS = 86_400_000;
const RETENTION_MS = 7 * DAY_MS;

describe("retention step", () => {
  let store: Store;
  let clock: ManualClock;
  const log = pino({ level: "silent" });
  const ctx = (retentionMs = RETENTION_MS) => ({ store, clock, log, retentionMs });

  beforeEach(async () => {
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    clock = new ManualClock();
  });
  afterEach(async () => {
    await store.close();
  });

  async function tableSizes() {
    const sizes: Record<string, number> = {};
    for (const table of ["jobs", "workers", "otp_tokens", "job_logs", "removed_jobs"] as const) sizes[table] = await store.countRows(table);
    return sizes;
  }

  it("keeps jobs that finished within the retention and removes older ones with all their rows", async () => {
    await driveJob(store, clock, "old", "destroyed", { attempts: 2 });
    clock.advance(2 * DAY_MS);
    await driveJob(store, clock, "recent", "destroyed");
    clock.advance(RETENTION_MS - DAY_MS); // old finished 8 days ago, recent 6 days ago
    assert.deepEqual(await removeExpiredJobs(ctx()), { removed: 1, forgotten: 0 });
    assert.equal(await store.jobs.get("old"), undefined);
    assert.ok(await store.jobs.get("recent"));
    assert.deepEqual(await tableSizes(), { jobs: 1, workers: 1, otp_tokens: 1, job_logs: 1, removed_jobs: 1 });
    assert.equal((await store.retention.getRemoved("old"))?.removed_at, clock.nowMs());
  });

  it("never removes a live job, nor a finished one whose worker is not destroyed yet", async () => {
    await driveJob(store, clock, "queued", "queued");
    await driveJob(store, clock, "provisioning", "provisioning");
    await driveJob(store, clock, "running", "running");
    await driveJob(store, clock, "destroying", "ended", { end: "failed" });
    clock.advance(10 * RETENTION_MS);
    assert.deepEqual(await removeExpiredJobs(ctx()), { removed: 0, forgotten: 0 });
    assert.deepEqual(await tableSizes(), { jobs: 4, workers: 3, otp_tokens: 3, job_logs: 2, removed_jobs: 0 });
  });

  it("removes at most batchJobs × maxBatches jobs per pass, the oldest first; the next passes continue", async () => {
    for (let i = 0; i < 10; i++) {
      await driveJob(store, clock, `job-${String(i).padStart(2, "0")}`, "destroyed");
      clock.advance(1000);
    }
    clock.advance(RETENTION_MS);
    const limits = { batchJobs: 3, maxBatches: 2 };
    assert.equal((await removeExpiredJobs(ctx(), limits)).removed, 6);
    assert.deepEqual((await store.jobs.list({ limit: 20 })).map((j) => j.id).sort(), ["job-06", "job-07", "job-08", "job-09"]);
    assert.equal((await removeExpiredJobs(ctx(), limits)).removed, 4);
    assert.equal((await removeExpiredJobs(ctx(), limits)).removed, 0);
    assert.equal(await store.countRows("jobs"), 0);
  });

  it("keeps everything when the retention is 0 (or not configured)", async () => {
    await driveJob(store, clock, "ancient", "destroyed");
    clock.advance(3650 * DAY_MS);
    assert.deepEqual(await removeExpiredJobs(ctx(0)), { removed: 0, forgotten: 0 });
    assert.deepEqual(await removeExpiredJobs({ store, clock, log }), { removed: 0, forgotten: 0 }, "not configured");
    assert.ok(await store.jobs.get("ancient"));
  });

  it(`forgets the record of a removed job ${REMOVED_RECORD_FACTOR} times the retention after its removal`, async () => {
    await driveJob(store, clock, "old", "destroyed");
    clock.advance(RETENTION_MS + 1);
    assert.equal((await removeExpiredJobs(ctx())).removed, 1);
    clock.advance(REMOVED_RECORD_FACTOR * RETENTION_MS);
    assert.equal((await removeExpiredJobs(ctx())).forgotten, 0, "exactly at the horizon it is still kept");
    assert.ok(await store.retention.getRemoved("old"));
    clock.advance(1);
    assert.equal((await removeExpiredJobs(ctx())).forgotten, 1);
    assert.equal(await store.retention.getRemoved("old"), undefined);
  });
});
