/**
 * The schedules step on a real SQLite store with a manual clock, called directly: which ticks
 * fire, one job each; missed ticks after an outage (skip, run-once, never a burst); concurrency
 * forbid; paused schedules; DST in a timezone; 6-field (seconds) expressions; two leaders at once;
 * a creator key revoked; a template that is no longer valid. No test sleeps.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { validateJobSpec } from "../core/job-spec.js";
import { cronOf, MAX_TICKS_PER_PASS, nextTickAfter, SCHEDULE_LABEL, TICK_LABEL, tickKey } from "../core/schedule.js";
import { createMetrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import { storedIdempotencyKey } from "../store/jobs.js";
import type { JobRow, ScheduleRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { Reconciler } from "./reconciler.js";
import { fireDueSchedules, type ScheduleStepContext } from "./schedules.js";

const GRACE_MS = 30_000;
const MINUTE = 60_000;

describe("schedules step", () => {
  let clock: ManualClock;
  let store: Store;
  let ctx: ScheduleStepContext;
  let nudges: number;

  beforeEach(async () => {
    clock = new ManualClock(Date.parse("2026-01-05T12:00:30Z"));
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    nudges = 0;
    ctx = {
      store,
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      providers: new Map([["local", {}]]),
      nudge: () => nudges++,
      scheduleGraceMs: GRACE_MS,
    };
  });

  afterEach(async () => {
    await store.close();
  });

  async function create(name: string, cron: string, o: { timezone?: string; missed?: string; concurrency?: string; createdBy?: string | null; provider?: string } = {}): Promise<ScheduleRow> {
    const spec = validateJobSpec({ command: ["echo", name], provider: o.provider ?? "local", labels: { team: "infra" } }, { provider: "local", timeoutSeconds: 60, providers: ["local", "docker"] });
    const row = await store.schedules.insert({
      name,
      cron,
      timezone: o.timezone ?? "",
      spec: JSON.stringify(spec),
      missed_policy: o.missed ?? "skip",
      concurrency: o.concurrency ?? "allow",
      paused: 0,
      next_run_at: nextTickAfter(cronOf(cron, o.timezone ?? ""), clock.nowMs())!,
      created_at: clock.nowMs(),
      created_by: o.createdBy ?? null,
    });
    assert.ok(row);
    return row;
  }

  async function jobsOf(name: string): Promise<JobRow[]> {
    return store.db.selectFrom("jobs").selectAll().where("schedule_name", "=", name).orderBy("idempotency_key").execute();
  }

  /** Each job's tick, from its stored idempotency key ("<created_by>:schedule:<name>:<tick>", store/jobs.ts). */
  const ticksOf = async (name: string) => (await jobsOf(name)).map((j) => j.idempotency_key!.slice(j.idempotency_key!.indexOf(`schedule:${name}:`) + `schedule:${name}:`.length));
  const schedule = async (name: string) => (await store.schedules.get(name))!;
  /** hodei_schedule_ticks_total by "result/reason" (what /metrics would show). */
  const ticksCounted = async () => {
    const { values } = await ctx.metrics.scheduleTicks.get();
    return Object.fromEntries(values.map((v) => [`${v.labels.result}/${v.labels.reason}`, v.value]));
  };

  it("fires one job per tick with the tick's idempotency key, the schedule's label and name, then waits for the next tick", async () => {
    await create("every-five", "*/5 * * * *");
    assert.equal(await fireDueSchedules(ctx), Date.parse("2026-01-05T12:05:00Z"), "returns the next tick (the pass's wake-up)");
    assert.deepEqual(await jobsOf("every-five"), [], "nothing is due before the first tick");
    clock.advance(Date.parse("2026-01-05T12:05:00Z") - clock.nowMs());
    await fireDueSchedules(ctx);
    await fireDueSchedules(ctx);
    const [job, ...more] = await jobsOf("every-five");
    assert.deepEqual(more, [], "a second pass at the same time fires nothing more");
    assert.equal(job.idempotency_key, storedIdempotencyKey(null, tickKey("every-five", Date.parse("2026-01-05T12:05:00Z"))));
    assert.equal(job.idempotency_key, ":schedule:every-five:2026-01-05T12:05:00.000Z", "stored in the namespace of the schedule's creator (none here)");
    assert.deepEqual(JSON.parse(job.labels), { team: "infra", [SCHEDULE_LABEL]: "every-five", [TICK_LABEL]: "2026-01-05T12:05:00.000Z" });
    assert.deepEqual(JSON.parse(job.command), ["echo", "every-five"]);
    assert.equal(job.state, "queued");
    const row = await schedule("every-five");
    assert.equal(row.next_run_at, Date.parse("2026-01-05T12:10:00Z"));
    assert.equal(row.last_run_at, Date.parse("2026-01-05T12:05:00Z"));
    assert.equal(row.last_job_id, job.id);
    assert.equal(row.fired_ticks, 1);
    assert.equal(row.skipped_ticks, 0);
  });

  it("a 6-field expression fires every second; a late pass within the grace fires each tick it owes, oldest first", async () => {
    await create("seconds", "* * * * * *");
    clock.advance(4_500); // ticks at :31, :32, :33, :34
    await fireDueSchedules(ctx);
    assert.deepEqual(await ticksOf("seconds"), ["2026-01-05T12:00:31.000Z", "2026-01-05T12:00:32.000Z", "2026-01-05T12:00:33.000Z", "2026-01-05T12:00:34.000Z"]);
    clock.advance(500);
    await fireDueSchedules(ctx);
    assert.equal((await ticksOf("seconds")).at(-1), "2026-01-05T12:00:35.000Z");
    assert.equal((await schedule("seconds")).next_run_at, Date.parse("2026-01-05T12:00:36Z"));
  });

  it("catching up within the grace fires at most MAX_TICKS_PER_PASS per pass and asks for another pass at once", async () => {
    await create("seconds", "* * * * * *");
    clock.advance(25_000); // 25 ticks due, all on time
    await fireDueSchedules(ctx);
    assert.equal((await jobsOf("seconds")).length, MAX_TICKS_PER_PASS);
    assert.equal((await schedule("seconds")).next_run_at, Date.parse("2026-01-05T12:00:31Z") + MAX_TICKS_PER_PASS * 1000, "goes on from the first tick not fired");
    await fireDueSchedules(ctx);
    await fireDueSchedules(ctx);
    const ticks = await ticksOf("seconds");
    assert.equal(ticks.length, 25);
    assert.equal(new Set(ticks).size, 25);
  });

  it("missed skip: after an outage longer than the grace, the missed ticks fire nothing and the schedule goes on from the next tick", async () => {
    await create("minutely", "* * * * *");
    clock.advance(10 * MINUTE + 40_000); // 12:10:70 = 12:11:10 ... ticks 12:01..12:11; 12:11 is 10 s late: on time
    await fireDueSchedules(ctx);
    assert.deepEqual(await ticksOf("minutely"), ["2026-01-05T12:11:00.000Z"], "only the on-time tick fires");
    const row = await schedule("minutely");
    assert.equal(row.skipped_ticks, 10);
    assert.match(row.last_skip_reason, /missed: 10 tick\(s\) up to 2026-01-05T12:10:00.000Z came more than 30 s before/);
    assert.equal(row.next_run_at, Date.parse("2026-01-05T12:12:00Z"));
    assert.deepEqual(await ticksCounted(), { "fired/": 1, "skipped/missed": 10 });
  });

  it("missed skip with no on-time tick fires nothing at all", async () => {
    await create("minutely", "* * * * *");
    clock.advance(10 * MINUTE + 5_000); // now 12:10:35: the 12:10 tick is 35 s late
    await fireDueSchedules(ctx);
    assert.deepEqual(await jobsOf("minutely"), []);
    assert.equal((await schedule("minutely")).next_run_at, Date.parse("2026-01-05T12:11:00Z"));
    assert.equal((await schedule("minutely")).skipped_ticks, 10);
    assert.deepEqual(await ticksCounted(), { "skipped/missed": 10 });
  });

  it("missed run-once: one job for the latest missed tick, however long the outage, never a burst", async () => {
    await create("minutely", "* * * * *", { missed: "run-once" });
    await create("seconds", "* * * * * *", { missed: "run-once" });
    clock.advance(365 * 24 * 60 * MINUTE + 15_000); // a year down; now 12:00:45, so no minute tick is on time
    await fireDueSchedules(ctx);
    await fireDueSchedules(ctx);
    const minute = await ticksOf("minutely");
    assert.deepEqual(minute, [new Date(clock.nowMs() - 45_000).toISOString()], "one job, for the latest missed tick (12:00)");
    assert.equal((await schedule("minutely")).next_run_at, clock.nowMs() + 15_000);
    // The per-second schedule's ticks within the grace (12:00:15 to 12:00:45) are on time; none older fires.
    const seconds = (await ticksOf("seconds")).map((t) => Date.parse(t));
    assert.equal(seconds.length, 2 * MAX_TICKS_PER_PASS, "two passes, each at most MAX_TICKS_PER_PASS");
    assert.ok(seconds.every((t) => t >= clock.nowMs() - GRACE_MS));
    assert.equal((await schedule("seconds")).skipped_ticks, 1000, "missed ticks counted up to 1000");
  });

  it("missed run-once does not add a job when an on-time tick fires anyway", async () => {
    await create("minutely", "* * * * *", { missed: "run-once" });
    clock.advance(10 * MINUTE + 40_000); // the 12:11 tick is on time
    await fireDueSchedules(ctx);
    assert.deepEqual(await ticksOf("minutely"), ["2026-01-05T12:11:00.000Z"]);
  });

  it("concurrency forbid skips a tick while the previous job has not ended, says why, and fires again once it has", async () => {
    await create("forbid", "* * * * *", { concurrency: "forbid" });
    clock.advance(30_000);
    await fireDueSchedules(ctx);
    const [first] = await jobsOf("forbid");
    assert.ok(first);
    clock.advance(MINUTE);
    await fireDueSchedules(ctx);
    assert.equal((await jobsOf("forbid")).length, 1, "the 12:02 tick is skipped");
    const row = await schedule("forbid");
    assert.equal(row.skipped_ticks, 1);
    assert.equal(row.last_skip_reason, `tick 2026-01-05T12:02:00.000Z fired no job: the previous job ${first.id} is still queued (concurrency forbid)`);
    assert.equal(row.next_run_at, Date.parse("2026-01-05T12:03:00Z"));
    await store.db.updateTable("jobs").set({ state: "succeeded", finished_at: clock.nowMs() }).where("id", "=", first.id).execute();
    clock.advance(MINUTE);
    await fireDueSchedules(ctx);
    assert.deepEqual(await ticksOf("forbid"), ["2026-01-05T12:01:00.000Z", "2026-01-05T12:03:00.000Z"]);
    assert.deepEqual(await ticksCounted(), { "fired/": 2, "skipped/concurrency_forbid": 1 });
  });

  it("allow fires every tick whatever the previous job does", async () => {
    await create("allow", "* * * * *");
    for (let i = 0; i < 3; i++) {
      clock.advance(i === 0 ? 30_000 : MINUTE);
      await fireDueSchedules(ctx);
    }
    assert.equal((await jobsOf("allow")).length, 3);
  });

  it("a paused schedule fires nothing; resumed, it goes on from its next tick without catching up", async () => {
    await create("paused", "* * * * *");
    assert.ok(await store.schedules.pause("paused"));
    clock.advance(3 * MINUTE);
    await fireDueSchedules(ctx);
    assert.deepEqual(await jobsOf("paused"), []);
    const next = nextTickAfter(cronOf("* * * * *", ""), clock.nowMs())!;
    assert.ok(await store.schedules.resume("paused", next));
    await fireDueSchedules(ctx);
    assert.deepEqual(await jobsOf("paused"), [], "the ticks while paused are not fired");
    clock.advance(next - clock.nowMs());
    await fireDueSchedules(ctx);
    assert.deepEqual(await ticksOf("paused"), ["2026-01-05T12:04:00.000Z"]);
  });

  /** Moves the clock to each next tick of `name` and fires it, until `untilMs`. */
  async function runUntil(name: string, untilMs: number): Promise<void> {
    for (;;) {
      const next = (await schedule(name)).next_run_at;
      if (next > untilMs) return;
      clock.advance(next - clock.nowMs());
      await fireDueSchedules(ctx);
    }
  }

  it("DST in Europe/Madrid: a daily 02:30 runs once on the day 02:30 does not exist (at 03:00) and once on the day it happens twice", async () => {
    clock = new ManualClock(Date.parse("2026-03-27T00:00:00Z"));
    ctx.clock = clock;
    await create("daily", "30 2 * * *", { timezone: "Europe/Madrid" });
    await runUntil("daily", Date.parse("2026-03-31T00:00:00Z"));
    assert.deepEqual(await ticksOf("daily"), [
      "2026-03-27T01:30:00.000Z", // 02:30 CET
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:00:00.000Z", // 02:30 does not exist: 03:00 CEST
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
    clock.advance(Date.parse("2026-10-24T00:00:00Z") - clock.nowMs());
    await fireDueSchedules(ctx); // months later: missed, skipped
    await runUntil("daily", Date.parse("2026-10-27T00:00:00Z"));
    assert.deepEqual((await ticksOf("daily")).slice(4), [
      "2026-10-24T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T00:30:00.000Z", // 02:30 happens twice: once
      "2026-10-26T01:30:00.000Z", // 02:30 CET
    ]);
  });

  it("DST in Europe/Madrid: an interval expression runs at both occurrences of a repeated hour, each tick its own job", async () => {
    clock = new ManualClock(Date.parse("2026-10-24T23:50:00Z"));
    ctx.clock = clock;
    await create("half-hourly", "*/30 * * * *", { timezone: "Europe/Madrid" });
    await runUntil("half-hourly", Date.parse("2026-10-25T02:00:00Z"));
    assert.deepEqual(await ticksOf("half-hourly"), [
      "2026-10-25T00:00:00.000Z", // 02:00 CEST
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T01:00:00.000Z", // 02:00 CET
      "2026-10-25T01:30:00.000Z", // 02:30 CET
      "2026-10-25T02:00:00.000Z", // 03:00 CET
    ]);
  });

  it("two leaders at once (a frozen one woke up) fire each tick once", async () => {
    await create("race", "* * * * * *");
    clock.advance(3_000);
    await Promise.all([fireDueSchedules(ctx), fireDueSchedules(ctx), fireDueSchedules(ctx)]);
    const ticks = await ticksOf("race");
    assert.deepEqual(ticks, ["2026-01-05T12:00:31.000Z", "2026-01-05T12:00:32.000Z", "2026-01-05T12:00:33.000Z"]);
    assert.equal((await schedule("race")).fired_ticks, 3);
    assert.deepEqual(await ticksCounted(), { "fired/": 3 }, "each tick counted once, by the pass that fired it");
  });

  it("a tick whose job exists already (by its idempotency key) is that job, not a second one", async () => {
    const row = await create("crash", "* * * * *");
    clock.advance(30_000);
    const spec = validateJobSpec(
      { ...JSON.parse(row.spec), idempotencyKey: tickKey("crash", row.next_run_at), labels: { team: "infra", [SCHEDULE_LABEL]: "crash", [TICK_LABEL]: new Date(row.next_run_at).toISOString() } },
      { provider: "local", timeoutSeconds: 60, providers: ["local"] },
    );
    const earlier = await store.jobs.insert("job-of-the-tick", spec, clock.nowMs());
    await fireDueSchedules(ctx);
    assert.equal((await store.db.selectFrom("jobs").selectAll().execute()).length, 1);
    assert.equal((await schedule("crash")).last_job_id, earlier.id);
    assert.equal((await schedule("crash")).next_run_at, row.next_run_at + MINUTE);
  });

  it("a tick whose key names a job of another spec (the schedule was removed and made again) moves on and is counted as job_exists", async () => {
    const row = await create("remade", "* * * * *");
    clock.advance(30_000);
    const other = validateJobSpec({ command: ["echo", "the old schedule's command"], idempotencyKey: tickKey("remade", row.next_run_at) }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
    await store.jobs.insert("job-of-the-old-schedule", other, clock.nowMs());
    await fireDueSchedules(ctx);
    assert.equal((await store.db.selectFrom("jobs").selectAll().execute()).length, 1, "no second job for the tick");
    assert.equal((await schedule("remade")).next_run_at, row.next_run_at + MINUTE, "the schedule moved on");
    assert.deepEqual(await ticksCounted(), { "skipped/job_exists": 1 });
  });

  it("the ticks of a schedule whose creating key was revoked fire nothing, saying why", async () => {
    await store.keys.insert({ name: "ci", keyHash: "h", scopes: ["submit", "provider:local"] }, clock.nowMs());
    await create("owned", "* * * * *", { createdBy: "ci" });
    clock.advance(30_000);
    await fireDueSchedules(ctx);
    assert.equal((await jobsOf("owned")).length, 1);
    assert.equal((await jobsOf("owned"))[0].submitted_by, "ci", "submitted as the key that created it");
    await store.keys.revoke("ci", clock.nowMs());
    clock.advance(MINUTE);
    await fireDueSchedules(ctx);
    assert.equal((await jobsOf("owned")).length, 1);
    assert.match((await schedule("owned")).last_skip_reason, /the API key "ci" that created the schedule was revoked/);
    assert.deepEqual(await ticksCounted(), { "fired/": 1, "skipped/creator_key": 1 });
  });

  it("a template that is no longer valid (its provider was disabled) is skipped with the reason; the schedule moves on", async () => {
    await create("docker", "* * * * *", { provider: "docker" });
    clock.advance(30_000);
    await fireDueSchedules(ctx);
    assert.deepEqual(await jobsOf("docker"), []);
    const row = await schedule("docker");
    assert.match(row.last_skip_reason, /the template is no longer valid \(provider: unknown provider "docker"/);
    assert.equal(row.next_run_at, Date.parse("2026-01-05T12:02:00Z"));
    assert.deepEqual(await ticksCounted(), { "skipped/invalid_template": 1 });
  });

  it("reads due schedules a batch at a time and asks for another pass when a batch is full", async () => {
    for (let i = 0; i < 101; i++) await create(`s-${String(i).padStart(3, "0")}`, "* * * * *");
    clock.advance(30_000);
    await fireDueSchedules(ctx);
    assert.equal(nudges > 0, true);
    await fireDueSchedules(ctx);
    const count = await store.db.selectFrom("jobs").select(({ fn }) => fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    assert.equal(Number(count.n), 101);
  });
});

describe("schedules in the reconcile pass", () => {
  let clock: ManualClock;
  let store: Store;

  beforeEach(async () => {
    clock = new ManualClock(Date.parse("2026-01-05T12:00:30Z"));
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
  });
  afterEach(async () => {
    await store.close();
  });

  function replica(id: string, reconcileIntervalMs = 2000): Reconciler {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    return new Reconciler({
      store,
      providers: new Map([["fake", { provider, maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: createMetrics(),
      registrationTimeoutMs: 60_000,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: { cancel: () => true },
      replica: { replicaId: id, nodeId: "node-a" },
      // Longer than the test's time: the first replica keeps the lease.
      leaderLeaseMs: 600_000,
    });
  }

  async function insertMinutely(): Promise<void> {
    const spec = validateJobSpec({ command: ["true"], provider: "fake" }, { provider: "fake", timeoutSeconds: 60, providers: ["fake"] });
    await store.schedules.insert({
      name: "minutely",
      cron: "* * * * *",
      timezone: "",
      spec: JSON.stringify(spec),
      missed_policy: "skip",
      concurrency: "allow",
      paused: 0,
      next_run_at: Date.parse("2026-01-05T12:01:00Z"),
      created_at: clock.nowMs(),
      created_by: null,
    });
  }

  /** Lets queued callbacks and I/O run until `check` holds (bounded). */
  async function until(check: () => Promise<boolean>): Promise<boolean> {
    for (let i = 0; i < 2000; i++) {
      if (await check()) return true;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return false;
  }

  it("wakes the pass at a schedule's next tick with a timer on the clock, not at the next timer pass", async () => {
    await insertMinutely();
    const leader = replica("replica-a", 600_000); // no timer pass within the test
    leader.start();
    assert.ok(await until(async () => leader.leadership.isLeader()), "leads after its first pass");
    assert.ok(await until(async () => clock.pendingTimers > 0), "a wake-up is set for 12:01:00");
    clock.advance(30_000);
    assert.ok(await until(async () => (await store.countRows("jobs")) === 1), "the tick fired without a timer pass or a nudge");
    await leader.stop();
    assert.equal(clock.pendingTimers, 0, "stop cancels the wake-up");
  });

  it("fires on the leader only, before provisioning: a tick's job gets its worker in the same pass", async () => {
    await insertMinutely();
    const leader = replica("replica-a");
    const follower = replica("replica-b");
    await leader.runOnce();
    await follower.runOnce();
    assert.equal(leader.leadership.isLeader(), true);
    assert.equal(follower.leadership.isLeader(), false);
    clock.advance(30_000);
    await follower.runOnce({ isNudged: true });
    assert.equal(await store.countRows("jobs"), 0, "a replica that does not lead fires nothing");
    await leader.runOnce({ isNudged: true });
    await leader.settle();
    const jobs = await store.db.selectFrom("jobs").selectAll().execute();
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0].state, "provisioning", "claimed in the pass that fired it");
    assert.equal(jobs[0].schedule_name, "minutely");
    await leader.stop();
    await follower.stop();
  });
});
