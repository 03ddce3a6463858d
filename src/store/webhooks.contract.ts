/**
 * Store contract, webhook deliveries: a job's deliveries are written by the transaction that makes
 * it final (every way: result, loss, cancel, queue timeout), never before and never for a retry;
 * they are taken with a lease and marked under guards; retention removes them with their job.
 * Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import type { JobState } from "../core/job-state.js";
import { contractSpec, driveJob } from "./lifecycle.contract.js";
import { Store } from "./store.js";

const HOOKS = ["https://a.example.com/hook", "https://b.example.com/hook"];

export function describeWebhookQueries(makeStore: () => Promise<Store>): void {
  describe("webhook deliveries", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    const drive = (id: string, stage: Parameters<typeof driveJob>[3], options: Parameters<typeof driveJob>[4] = {}) =>
      driveJob(store, clock, id, stage, { ...options, spec: { notify: HOOKS, ...options.spec } });

    for (const end of ["succeeded", "failed", "timed_out", "canceled"] as JobState[]) {
      it(`writes one pending delivery per URL in the transaction that ends a job ${end}`, async () => {
        await drive("j", "running");
        assert.deepEqual(await store.webhooks.listOfJob("j"), [], "none while it runs");
        const [worker] = await store.workers.listOfJob("j");
        assert.ok(await store.attempts.end(worker, end, clock.nowMs(), { finished_at: clock.nowMs() }, ""));
        const rows = await store.webhooks.listOfJob("j");
        assert.deepEqual(rows.map((r) => [r.url, r.state, r.attempts, r.next_attempt_at]).sort(), HOOKS.map((url) => [url, "pending", 0, clock.nowMs()]));
        assert.notEqual(rows[0].id, rows[1].id);
      });
    }

    it("writes none for an attempt lost and retried, nor for a late end of that attempt", async () => {
      const { workers } = await drive("j", "running", { attempts: 2 });
      assert.deepEqual(await store.webhooks.listOfJob("j"), []);
      assert.equal(await store.attempts.end(workers[0], "failed", clock.nowMs(), { finished_at: clock.nowMs() }, "late"), null);
      assert.deepEqual(await store.webhooks.listOfJob("j"), []);
    });

    it("writes them when a job is canceled or times out in the queue, and a job without URLs gets none", async () => {
      await drive("canceled", "queued");
      assert.ok(await store.attempts.cancel("canceled", "canceled by user", clock.nowMs(), clock.nowMs()));
      assert.equal((await store.webhooks.listOfJob("canceled")).length, 2);
      const waits = await store.jobs.insert("waits", contractSpec({ notify: HOOKS.slice(0, 1), queueTimeoutSeconds: 60 }), clock.nowMs());
      assert.ok(await store.attempts.timeOutInQueue("waits", "never started", waits.queue_deadline_ms!, 0));
      assert.deepEqual((await store.webhooks.listOfJob("waits")).map((r) => r.url), HOOKS.slice(0, 1));
      await driveJob(store, clock, "quiet", "ended");
      assert.deepEqual(await store.webhooks.listOfJob("quiet"), []);
    });

    it("adds the server's URLs to every job's end, once each", async () => {
      const withServerUrl = new Store(store.db, store.kind, store.notifier, { webhookUrls: ["https://ops.example.com/all", HOOKS[0]] });
      await driveJob(withServerUrl, clock, "plain", "ended");
      assert.deepEqual((await store.webhooks.listOfJob("plain")).map((r) => r.url).sort(), [HOOKS[0], "https://ops.example.com/all"]);
      await driveJob(withServerUrl, clock, "both", "ended", { spec: { notify: HOOKS } });
      assert.deepEqual((await store.webhooks.listOfJob("both")).map((r) => r.url).sort(), [...HOOKS, "https://ops.example.com/all"].sort());
    });

    it("takes due deliveries oldest first, counting the attempt and leasing them, and not again before the lease passes", async () => {
      await drive("first", "ended");
      clock.advance(1000);
      await drive("second", "ended");
      const now = clock.nowMs();
      const taken = await store.webhooks.takeDue(now, now + 40_000, 3);
      assert.equal(taken.length, 3);
      assert.deepEqual(taken.map((r) => r.job_id).sort(), ["first", "first", "second"]);
      assert.ok(taken.every((r) => r.attempts === 1 && r.next_attempt_at === now + 40_000));
      assert.equal((await store.webhooks.takeDue(now, now + 60_000, 10)).length, 1, "only the one not taken");
      assert.deepEqual(await store.webhooks.takeDue(now + 39_999, now + 80_000, 10), []);
      assert.equal((await store.webhooks.takeDue(now + 40_000, now + 80_000, 10)).length, 3, "the leases passed");
      assert.deepEqual(await store.webhooks.takeDue(now, now, 0), []);
    });

    it("marks a delivery delivered or tried again only for the attempt that is current", async () => {
      await drive("j", "ended", { spec: { notify: HOOKS.slice(0, 1) } });
      const now = clock.nowMs();
      const [first] = await store.webhooks.takeDue(now, now + 40_000, 1);
      const retried = await store.webhooks.markFailedAttempt(first.id, 1, { status: 503, error: "answered HTTP 503" }, now + 10_000);
      assert.deepEqual([retried?.state, retried?.last_status, retried?.last_error, retried?.next_attempt_at], ["pending", 503, "answered HTTP 503", now + 10_000]);
      const [second] = await store.webhooks.takeDue(now + 10_000, now + 50_000, 1);
      assert.equal(second.attempts, 2);
      assert.equal(await store.webhooks.markDelivered(first.id, 1, 200, now), null, "a late answer to request 1 changes nothing");
      const delivered = await store.webhooks.markDelivered(first.id, 2, 204, now + 11_000);
      assert.deepEqual([delivered?.state, delivered?.last_status, delivered?.last_error, delivered?.delivered_at], ["delivered", 204, "", now + 11_000]);
      assert.equal(await store.webhooks.markFailedAttempt(first.id, 2, { status: null, error: "late" }, null), null, "a delivered one stays delivered");
      assert.deepEqual(await store.webhooks.takeDue(now + 100_000, now + 200_000, 10), []);
    });

    it("gives a delivery up when no next attempt is given", async () => {
      await drive("j", "ended", { spec: { notify: HOOKS.slice(0, 1) } });
      const [taken] = await store.webhooks.takeDue(clock.nowMs(), clock.nowMs() + 1, 1);
      const failed = await store.webhooks.markFailedAttempt(taken.id, 1, { status: null, error: "refused: loopback" }, null);
      assert.equal(failed?.state, "failed");
      assert.deepEqual(await store.webhooks.takeDue(clock.nowMs() + 10_000_000, clock.nowMs() + 20_000_000, 10), []);
    });

    it("is removed by retention with its job", async () => {
      await drive("old", "destroyed");
      assert.equal((await store.webhooks.listOfJob("old")).length, 2);
      clock.advance(10_000);
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 10), 1);
      assert.deepEqual(await store.webhooks.listOfJob("old"), []);
      assert.equal(await store.countRows("webhook_deliveries"), 0);
    });
  });
}
