/**
 * Store contract: schedules (migration 0026). Names unique; listing by name in pages; the due
 * schedules earliest first, paused ones never; pause and resume guarded; a tick fired as its job
 * and the schedule's advance in one transaction, or neither when the guard (the schedule's
 * next_run_at) lost, so two firings of one tick make one job; skips counted with their reason.
 * Run by describeStore on SQLite and PostgreSQL.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import type { NewSchedule, ScheduleAdvance, Store } from "./store.js";

const SPEC: JobSpec = validateJobSpec({ command: ["echo", "tick"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });

export function describeScheduleQueries(makeStore: () => Promise<Store>): void {
  describe("schedules", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    function schedule(name: string, overrides: Partial<NewSchedule> = {}): NewSchedule {
      return {
        name,
        cron: "* * * * *",
        timezone: "",
        spec: JSON.stringify(SPEC),
        missed_policy: "skip",
        concurrency: "allow",
        paused: 0,
        next_run_at: clock.nowMs() + 60_000,
        created_at: clock.nowMs(),
        created_by: "ci",
        ...overrides,
      };
    }

    const tickSpec = (name: string, tickMs: number): JobSpec => ({ ...SPEC, idempotencyKey: `schedule:${name}:${tickMs}` });

    function firing(name: string, expected: number, next: number): ScheduleAdvance & { tickMs: number } {
      return { name, expectedNextRunAt: expected, nextRunAt: next, tickMs: expected };
    }

    it("stores a schedule once per name and reads it back as stored", async () => {
      const row = await store.schedules.insert(schedule("nightly"));
      assert.ok(row);
      assert.equal(row.fired_ticks, 0);
      assert.equal(row.skipped_ticks, 0);
      assert.equal(row.last_skip_reason, "");
      assert.equal(row.last_job_id, null);
      assert.equal(await store.schedules.insert(schedule("nightly", { cron: "0 3 * * *" })), null, "the name is taken");
      assert.deepEqual(await store.schedules.get("nightly"), row);
      assert.equal(await store.schedules.get("other"), undefined);
      assert.equal(await store.schedules.count(), 1);
    });

    it("lists by name, a page at a time, in byte order", async () => {
      for (const name of ["b-2", "a", "b", "a-1", "9"]) await store.schedules.insert(schedule(name));
      const first = await store.schedules.list("", 3);
      assert.deepEqual(
        first.map((r) => r.name),
        ["9", "a", "a-1"],
      );
      assert.deepEqual(
        (await store.schedules.list("a-1", 3)).map((r) => r.name),
        ["b", "b-2"],
      );
    });

    it("lists the due schedules earliest first, never a paused one, and knows the earliest next tick", async () => {
      const now = clock.nowMs();
      await store.schedules.insert(schedule("later", { next_run_at: now + 5000 }));
      await store.schedules.insert(schedule("due-2", { next_run_at: now - 1000 }));
      await store.schedules.insert(schedule("due-1", { next_run_at: now - 2000 }));
      await store.schedules.insert(schedule("due-now", { next_run_at: now }));
      await store.schedules.insert(schedule("paused", { next_run_at: now - 9000, paused: 1 }));
      assert.deepEqual(
        (await store.schedules.listDue(now, 10)).map((r) => r.name),
        ["due-1", "due-2", "due-now"],
      );
      assert.deepEqual(
        (await store.schedules.listDue(now, 1)).map((r) => r.name),
        ["due-1"],
      );
      assert.equal(await store.schedules.nextDueAt(), now - 2000);
    });

    it("pauses a running schedule and resumes a paused one from the time given; repeating either changes nothing", async () => {
      await store.schedules.insert(schedule("s"));
      assert.equal((await store.schedules.pause("s"))?.paused, 1);
      assert.equal(await store.schedules.pause("s"), null);
      assert.equal(await store.schedules.nextDueAt(), null, "a paused schedule is never due");
      const resumed = await store.schedules.resume("s", 123_000);
      assert.equal(resumed?.paused, 0);
      assert.equal(resumed?.next_run_at, 123_000);
      assert.equal(await store.schedules.resume("s", 456_000), null);
      assert.equal(await store.schedules.pause("missing"), null);
    });

    it("fires a tick as its job and the schedule's advance together", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      const job = await store.schedules.fire(firing("s", row.next_run_at, row.next_run_at + 60_000), {
        id: "job-1",
        spec: tickSpec("s", row.next_run_at),
        nowMs: clock.nowMs(),
        submittedBy: "ci",
        tickMs: row.next_run_at,
      });
      assert.equal(job?.id, "job-1");
      assert.equal(job?.schedule_name, "s");
      assert.equal(job?.submitted_by, "ci");
      const after = (await store.schedules.get("s"))!;
      assert.equal(after.next_run_at, row.next_run_at + 60_000);
      assert.equal(after.last_run_at, row.next_run_at);
      assert.equal(after.last_job_id, "job-1");
      assert.equal(after.fired_ticks, 1);
      assert.equal((await store.jobs.get("job-1"))?.schedule_name, "s");
    });

    it("writes nothing when the schedule has moved on, was paused or was removed (the firing transaction is undone)", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      const stale = firing("s", row.next_run_at - 60_000, row.next_run_at);
      const job = (id: string) => ({ id, spec: tickSpec("s", stale.tickMs), nowMs: clock.nowMs(), submittedBy: null, tickMs: stale.tickMs });
      assert.equal(await store.schedules.fire(stale, job("job-stale")), null);
      await store.schedules.pause("s");
      assert.equal(await store.schedules.fire(firing("s", row.next_run_at, row.next_run_at + 1), job("job-paused")), null);
      await store.schedules.delete("s");
      assert.equal(await store.schedules.fire(firing("s", row.next_run_at, row.next_run_at + 1), job("job-gone")), null);
      assert.equal(await store.countRows("jobs"), 0, "no job left by a firing that lost");
      assert.equal(await store.countRows("job_labels"), 0);
    });

    it("two firings of one tick at once make one job; the loser writes nothing", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      const advance = firing("s", row.next_run_at, row.next_run_at + 60_000);
      const results = await Promise.all(
        ["job-a", "job-b", "job-c"].map((id) => store.schedules.fire(advance, { id, spec: tickSpec("s", row.next_run_at), nowMs: clock.nowMs(), submittedBy: null, tickMs: row.next_run_at })),
      );
      assert.equal(results.filter((r) => r !== null).length, 1);
      assert.equal(await store.countRows("jobs"), 1);
      assert.equal((await store.schedules.get("s"))?.fired_ticks, 1);
    });

    it("a tick whose job exists (by its key) moves the schedule on with that job", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      const existing = await store.jobs.insert("job-first", tickSpec("s", row.next_run_at), clock.nowMs());
      const job = await store.schedules.fire(firing("s", row.next_run_at, row.next_run_at + 60_000), {
        id: "job-second",
        spec: tickSpec("s", row.next_run_at),
        nowMs: clock.nowMs(),
        submittedBy: null,
        tickMs: row.next_run_at,
      });
      assert.equal(job?.id, existing.id);
      assert.equal((await store.schedules.get("s"))?.last_job_id, existing.id);
      assert.equal(await store.countRows("jobs"), 1);
    });

    it("skips ticks with their count and reason, guarded like a firing", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      const skipped = { count: 3, reason: "missed", atMs: clock.nowMs() };
      assert.equal(await store.schedules.skip({ name: "s", expectedNextRunAt: row.next_run_at, nextRunAt: row.next_run_at + 180_000, skipped }), true);
      assert.equal(await store.schedules.skip({ name: "s", expectedNextRunAt: row.next_run_at, nextRunAt: row.next_run_at + 240_000, skipped }), false);
      const after = (await store.schedules.get("s"))!;
      assert.equal(after.skipped_ticks, 3);
      assert.equal(after.last_skip_reason, "missed");
      assert.equal(after.last_skipped_at, clock.nowMs());
      assert.equal(after.next_run_at, row.next_run_at + 180_000);
    });

    it("removes a schedule and answers it; the jobs it fired stay, still naming it", async () => {
      const row = (await store.schedules.insert(schedule("s")))!;
      await store.schedules.fire(firing("s", row.next_run_at, row.next_run_at + 60_000), {
        id: "job-1",
        spec: tickSpec("s", row.next_run_at),
        nowMs: clock.nowMs(),
        submittedBy: null,
        tickMs: row.next_run_at,
      });
      assert.equal((await store.schedules.delete("s"))?.name, "s");
      assert.equal(await store.schedules.delete("s"), null);
      assert.equal((await store.jobs.get("job-1"))?.schedule_name, "s");
    });
  });
}
