/**
 * Part of the store contract (store.contract.ts runs it): the queue's order (priority, then submit
 * order), run-at, queue deadlines and the end of a job that never started, labels as rows (ListJobs
 * by label, removed with the job) and the spec fingerprint of idempotent submits.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import type { JobSpec } from "../core/job-spec.js";
import { specHash } from "../core/spec-hash.js";
import { hashToken } from "../core/token.js";
import { contractSpec, driveJob } from "./lifecycle.contract.js";
import type { JobRow } from "./schema.js";
import type { Store } from "./store.js";
import { claimOne, TEST_MAX_WORKERS } from "../../test/fixtures/claim.js";

export function describeQueueQueries(makeStore: () => Promise<Store>): void {
  describe("the queue: priority, run-at, queue deadlines, labels, spec hashes", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    async function submit(id: string, spec: Partial<JobSpec> = {}): Promise<JobRow> {
      const row = await store.jobs.insert(id, contractSpec(spec), clock.nowMs());
      clock.advance(1);
      return row;
    }

    function prepare(job: JobRow) {
      const now = clock.nowMs();
      return {
        worker: { id: `${job.id}-w${job.attempts}`, name: workerName(`${job.id}-w${job.attempts}`), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: now + 60_000 },
        token: { id: `${job.id}-t${job.attempts}`, tokenHash: hashToken(`${job.id}-otp${job.attempts}`), expiresAtMs: now + 60_000 },
      };
    }

    /** The next job of `provider` the reconciler's claim takes (a batch of one). */
    function claim(provider = "local") {
      return claimOne(store, provider, clock.nowMs(), prepare);
    }

    describe("claim order", () => {
      it("claims the highest priority first, and within one priority in submit order", async () => {
        await submit("low-1");
        await submit("high-1", { priority: 5 });
        await submit("neg", { priority: -3 });
        await submit("high-2", { priority: 5 });
        await submit("low-2");
        await submit("top", { priority: 100 });
        const order = [];
        for (let claimed = await claim(); claimed; claimed = await claim()) order.push(claimed.job.id);
        assert.deepEqual(order, ["top", "high-1", "high-2", "low-1", "low-2", "neg"]);
      });

      it("never claims a job whose API key is revoked; a job of a working key, or of none, is claimed", async () => {
        for (const name of ["leaked", "fine"]) await store.keys.insert({ name, keyHash: hashToken(`key-${name}`), scopes: ["submit", "provider:local"] }, clock.nowMs());
        for (const [id, by] of [["planted", "leaked"], ["ok", "fine"], ["anonymous", null]] as const) {
          await store.jobs.insert(id, contractSpec({ priority: id === "planted" ? 100 : 0 }), clock.nowMs(), by);
        }
        assert.ok(await store.keys.revoke("leaked", clock.nowMs()));
        assert.deepEqual(await store.jobs.notStartedIdsOf("leaked", 10), ["planted"]);
        const order = [];
        for (let claimed = await claim(); claimed; claimed = await claim()) order.push(claimed.job.id);
        assert.deepEqual(order, ["anonymous", "ok"], "the revoked key's job, first by priority, is passed over (the others: same time, by id)");
        assert.equal((await store.jobs.get("planted"))?.state, "queued");
      });

      it("takes the head of the queue in that order when a batch claims several", async () => {
        await submit("low-1");
        await submit("high-1", { priority: 5 });
        await submit("neg", { priority: -3 });
        await submit("high-2", { priority: 5 });
        await submit("low-2");
        await submit("top", { priority: 100 });
        const batch = (limit: number) => store.attempts.claimBatch({ provider: "local", nowMs: clock.nowMs(), limit, maxWorkers: TEST_MAX_WORKERS, nodeId: null }, prepare);
        assert.deepEqual((await batch(4)).map((c) => c.job.id), ["top", "high-1", "high-2", "low-1"]);
        assert.deepEqual((await batch(4)).map((c) => c.job.id), ["low-2", "neg"]);
      });

      it("passes over a higher priority job that is not due yet", async () => {
        await submit("later", { priority: 50, delaySeconds: 60 });
        await submit("now");
        assert.equal((await claim())?.job.id, "now");
        assert.equal(await claim(), null);
        clock.advance(60_000);
        assert.equal((await claim())?.job.id, "later");
      });
    });

    describe("counts for the queue gauges", () => {
      it("countQueued counts queued jobs by provider and priority, due apart from not yet due, and nothing else", async () => {
        await submit("a", { priority: 5 });
        await submit("b", { priority: 5 });
        await submit("c");
        await submit("d", { provider: "docker" });
        await submit("later", { delaySeconds: 60 });
        await submit("claimed", { priority: 100 });
        assert.equal((await claim())?.job.id, "claimed");
        const sorted = (rows: Awaited<ReturnType<typeof store.jobs.countQueued>>) =>
          [...rows].sort((x, y) => `${x.provider}${x.priority}${x.isDue}`.localeCompare(`${y.provider}${y.priority}${y.isDue}`));
        assert.deepEqual(sorted(await store.jobs.countQueued(clock.nowMs())), [
          { provider: "docker", priority: 0, isDue: true, count: 1 },
          { provider: "local", priority: 0, isDue: false, count: 1 },
          { provider: "local", priority: 0, isDue: true, count: 1 },
          { provider: "local", priority: 5, isDue: true, count: 2 },
        ]);
        clock.advance(60_000);
        const due = await store.jobs.countQueued(clock.nowMs());
        assert.deepEqual(due.filter((r) => !r.isDue), [], "the delayed job is due once its time came");
      });
    });

    describe("run-at", () => {
      it("keeps a job queued until its run-at, and records when it became due", async () => {
        const runAtMs = clock.nowMs() + 3_600_000;
        const job = await submit("scheduled", { runAtMs });
        assert.equal(job.state, "queued");
        assert.equal(job.run_at_ms, runAtMs);
        assert.equal(job.not_before_ms, runAtMs);
        clock.advance(3_600_000 - 2);
        assert.equal(await claim(), null, "not a millisecond early");
        clock.advance(1);
        assert.equal((await claim())?.job.id, "scheduled");
      });

      it("treats a run-at in the past as now", async () => {
        const now = clock.nowMs();
        const job = await store.jobs.insert("past", contractSpec({ runAtMs: now - 86_400_000 }), now);
        assert.equal(job.run_at_ms, now);
        assert.equal((await claim())?.job.id, "past");
      });
    });

    describe("queue deadlines", () => {
      it("sets the deadline from the run-at, and lists a job once it is past, a page at a time", async () => {
        const due = clock.nowMs() + 10_000;
        const a = await submit("a", { queueTimeoutSeconds: 5, runAtMs: due });
        const b = await submit("b", { queueTimeoutSeconds: 5, runAtMs: due });
        await submit("forever");
        assert.equal(a.queue_deadline_ms, due + 5000);
        assert.equal(a.queue_timeout_seconds, 5);
        assert.equal(b.queue_deadline_ms, due + 5000);
        assert.deepEqual(await store.jobs.listPastQueueDeadline("queued", due + 4999, null, 10), []);
        const page1 = await store.jobs.listPastQueueDeadline("queued", due + 5000, null, 1);
        assert.deepEqual(page1.map((j) => j.id), ["a"]);
        const page2 = await store.jobs.listPastQueueDeadline("queued", due + 5000, { deadlineMs: page1[0].queue_deadline_ms!, id: "a" }, 1);
        assert.deepEqual(page2.map((j) => j.id), ["b"]);
        assert.deepEqual(await store.jobs.listPastQueueDeadline("provisioning", due + 5000, null, 10), []);
      });

      it("times out a queued job past its deadline, once, and never before it", async () => {
        const job = await submit("q", { queueTimeoutSeconds: 5 });
        assert.equal(await store.attempts.timeOutInQueue("q", "never started", job.queue_deadline_ms! - 1, 0), null, "not before its deadline");
        const ended = await store.attempts.timeOutInQueue("q", "never started", job.queue_deadline_ms!, 0);
        assert.equal(ended?.job.state, "timed_out");
        assert.equal(ended?.job.reason, "never started");
        assert.equal(ended?.job.finished_at, job.queue_deadline_ms);
        assert.equal(await store.attempts.timeOutInQueue("q", "again", job.queue_deadline_ms! + 1, 0), null);
      });

      it("times out a provisioning job: its worker goes to destroying and its unused token is revoked", async () => {
        const job = await submit("p", { queueTimeoutSeconds: 5 });
        const claimed = await claim();
        assert.equal(claimed?.job.id, "p");
        const at = job.queue_deadline_ms!;
        assert.deepEqual((await store.jobs.listPastQueueDeadline("provisioning", at, null, 10)).map((j) => j.id), ["p"]);
        const ended = await store.attempts.timeOutInQueue("p", "never started", at, at + 5000);
        assert.equal(ended?.job.state, "timed_out");
        assert.equal(ended?.workers[0].state, "destroying");
        const token = await store.tokens.getByHash(hashToken("p-otp1"));
        assert.ok(token && token.expires_at <= at, "the unused token was revoked");
      });

      it("gives a registered worker of a job that never started a stop deadline", async () => {
        const job = await submit("r", { queueTimeoutSeconds: 5 });
        await claim();
        const now = clock.nowMs();
        await store.attempts.recordProvisioned("r-w1", "pid-1", "process_id", now);
        assert.ok(await store.tokens.consume(hashToken("r-otp1"), now));
        assert.ok(await store.attempts.register("r-w1", hashToken("session"), "host", now));
        const ended = await store.attempts.timeOutInQueue("r", "never started", job.queue_deadline_ms!, job.queue_deadline_ms! + 4000);
        assert.equal(ended?.workers[0].state, "registered", "its agent may flush first");
        assert.equal(ended?.workers[0].stop_deadline_ms, job.queue_deadline_ms! + 4000);
        const worker = (await store.workers.get("r-w1"))!;
        assert.equal(await store.attempts.dispatch(worker, clock.nowMs()), false, "it can no longer be dispatched");
      });

      it("never times out a job once an attempt of it was dispatched, even back in the queue", async () => {
        const { job } = await driveJob(store, clock, "started", "ended", { attempts: 2, end: "succeeded", spec: { queueTimeoutSeconds: 5 } });
        assert.equal(job.queue_deadline_ms, null, "dispatch cleared the deadline");
        const { job: again } = await driveJob(store, clock, "requeued", "running", { spec: { queueTimeoutSeconds: 5 } });
        assert.equal(again.queue_deadline_ms, null);
        clock.advance(60_000);
        assert.deepEqual(await store.jobs.listPastQueueDeadline("queued", clock.nowMs(), null, 10), []);
        assert.equal(await store.attempts.timeOutInQueue("requeued", "x", clock.nowMs(), 0), null);
        assert.equal((await store.jobs.get("requeued"))?.state, "running");
      });
    });

    describe("labels", () => {
      beforeEach(async () => {
        await submit("a", { labels: { team: "infra", env: "prod" } });
        await submit("b", { labels: { team: "infra", env: "dev" }, provider: "docker" });
        await submit("c", { labels: { team: "web", env: "prod" } });
        await submit("d", { labels: { team: "infra", env: "prod", tier: "1" } });
        await submit("e");
      });

      const ids = (rows: JobRow[]) => rows.map((r) => r.id);

      it("lists the newest jobs with a label", async () => {
        assert.deepEqual(ids(await store.jobs.list({ labels: [["team", "infra"]], limit: 10 })), ["d", "b", "a"]);
        assert.deepEqual(ids(await store.jobs.list({ labels: [["team", "nobody"]], limit: 10 })), []);
      });

      it("requires every label of the selector", async () => {
        assert.deepEqual(ids(await store.jobs.list({ labels: [["team", "infra"], ["env", "prod"]], limit: 10 })), ["d", "a"]);
        assert.deepEqual(ids(await store.jobs.list({ labels: [["env", "prod"], ["team", "infra"], ["tier", "1"]], limit: 10 })), ["d"]);
      });

      it("combines labels with states, the provider, the limit and paging", async () => {
        assert.ok(await claim("docker"));
        const infra: [string, string][] = [["team", "infra"]];
        assert.deepEqual(ids(await store.jobs.list({ labels: infra, states: ["provisioning"], limit: 10 })), ["b"]);
        assert.deepEqual(ids(await store.jobs.list({ labels: infra, states: ["queued", "provisioning"], limit: 10 })), ["d", "b", "a"]);
        assert.deepEqual(ids(await store.jobs.list({ labels: infra, provider: "local", limit: 10 })), ["d", "a"]);
        const first = await store.jobs.list({ labels: infra, limit: 2 });
        assert.deepEqual(ids(first), ["d", "b"]);
        const last = first[first.length - 1];
        assert.deepEqual(ids(await store.jobs.list({ labels: infra, limit: 2, before: { createdAt: last.created_at, id: last.id } })), ["a"]);
      });

      it("removes a job's label rows with the job (retention)", async () => {
        // On a provider of its own: driveJob claims the oldest queued job of its provider.
        await driveJob(store, clock, "old", "destroyed", { spec: { labels: { team: "infra" }, provider: "kubernetes" } });
        assert.deepEqual(ids(await store.jobs.list({ labels: [["team", "infra"]], limit: 10 }))[0], "old");
        const labelRows = await store.countRows("job_labels");
        clock.advance(1000);
        assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 10), 1);
        assert.equal(await store.countRows("job_labels"), labelRows - 1);
        assert.deepEqual(ids(await store.jobs.list({ labels: [["team", "infra"]], limit: 10 })), ["d", "b", "a"]);
      });
    });

    describe("idempotency keys", () => {
      it("stores the spec's hash, and a reused key returns the first job with the first spec's hash", async () => {
        const first = await submit("first", { idempotencyKey: "k", command: ["echo", "one"] });
        assert.equal(first.spec_hash, specHash(contractSpec({ idempotencyKey: "k", command: ["echo", "one"] })));
        const again = await submit("second", { idempotencyKey: "k", command: ["echo", "two"] });
        assert.equal(again.id, "first");
        assert.notEqual(again.spec_hash, specHash(contractSpec({ idempotencyKey: "k", command: ["echo", "two"] })), "the caller can tell the specs differ");
        assert.equal(await store.countRows("job_labels"), 0, "a submit that yields to the key writes no labels");
      });

      it("frees a key once retention removed its job", async () => {
        await driveJob(store, clock, "old", "destroyed", { spec: { idempotencyKey: "nightly" } });
        clock.advance(1000);
        assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 10), 1);
        const next = await submit("new", { idempotencyKey: "nightly" });
        assert.equal(next.id, "new", "the key starts a new job");
        assert.equal(next.state, "queued");
      });
    });
  });
}
