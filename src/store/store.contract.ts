/**
 * The one test suite every store must pass (SQLite today, PostgreSQL next): each guarded state
 * change, each transaction that must write several rows or none, and the claim race. A store is
 * correct for Hodei when `describeStore(name, makeStore)` passes; the tests know nothing of the
 * dialect. `makeStore` must return a fresh, empty, migrated store on every call (one per test).
 *
 * Issued back to back: the tests that start several claims, submits, redemptions or transitions
 * with Promise.all prove that the guards let exactly one win when the statements arrive one after
 * another. On SQLite they run on one synchronous connection and cannot interleave, so they prove
 * nothing about concurrency there; they become real concurrency tests when the PostgreSQL store
 * (a pool of connections, FOR UPDATE SKIP LOCKED) runs this suite.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import { describeKeyQueries } from "./keys.contract.js";
import { describeQueueQueries } from "./queue.contract.js";
import { describeReplicaQueries } from "./replicas.contract.js";
import { describeScheduleQueries } from "./schedules.contract.js";
import { describeRetentionQueries } from "./retention.contract.js";
import { describeSecretQueries } from "./secrets.contract.js";
import type { JobRow, WorkerRow } from "./schema.js";
import type { NewToken, NewWorker, Store } from "./store.js";
import { describeWorkerQueries } from "./workers.contract.js";
import { describeWebhookQueries } from "./webhooks.contract.js";
import { claimOne } from "../../test/fixtures/claim.js";

const PROVIDERS = ["local", "docker", "kubernetes"];
const TOKEN_TTL_MS = 60_000;
const REGISTRATION_MS = 30_000;

function spec(overrides: Partial<JobSpec> = {}): JobSpec {
  return validateJobSpec({ command: ["echo", "hi"], ...overrides }, { provider: "local", timeoutSeconds: 600, providers: PROVIDERS });
}

export function describeStore(name: string, makeStore: () => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    describeWorkerQueries(makeStore);
    describeRetentionQueries(makeStore);
    describeKeyQueries(makeStore);
    describeSecretQueries(makeStore);
    describeQueueQueries(makeStore);
    describeReplicaQueries(makeStore);
    describeWebhookQueries(makeStore);
    describeScheduleQueries(makeStore);

    let store: Store;
    let clock: ManualClock;
    let ids: number;
    /** A readable, sortable id: the tests compare ids, so make them predictable. */
    const nextId = (prefix: string) => `${prefix}-${String(++ids).padStart(4, "0")}`;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
      ids = 0;
    });

    afterEach(async () => {
      await store.close();
    });

    async function submit(overrides: Partial<JobSpec> = {}, id = nextId("job")): Promise<JobRow> {
      return store.jobs.insert(id, spec(overrides), clock.nowMs());
    }

    /** Submits a job, claims it and writes its worker and token rows, as the scheduler does. */
    async function provision(overrides: Partial<JobSpec> = {}): Promise<{ job: JobRow; worker: WorkerRow; otp: string; tokenHash: string }> {
      const submitted = await submit(overrides);
      const otp = mintOtpToken();
      const claimed = await claimOne(store, submitted.provider, clock.nowMs(), (job) => prepareFor(job, hashToken(otp)));
      assert.ok(claimed, "the job was claimed");
      assert.equal(claimed.job.id, submitted.id);
      return { job: claimed.job, worker: claimed.worker, otp, tokenHash: hashToken(otp) };
    }

    function prepareFor(job: JobRow, tokenHash: string): { worker: NewWorker; token: NewToken } {
      const workerId = nextId("worker");
      return {
        worker: {
          id: workerId,
          name: workerName(workerId),
          jobId: job.id,
          attempt: job.attempts,
          provider: job.provider,
          registrationDeadlineMs: clock.nowMs() + REGISTRATION_MS,
        },
        token: { id: nextId("token"), tokenHash, expiresAtMs: clock.nowMs() + TOKEN_TTL_MS },
      };
    }

    /** provision + recordProvisioned: the worker is waiting for its agent. */
    async function provisioned(overrides: Partial<JobSpec> = {}) {
      const p = await provision(overrides);
      const worker = await store.attempts.recordProvisioned(p.worker.id, "12345", "process_id", clock.nowMs());
      assert.ok(worker);
      return { ...p, worker };
    }

    /** provisioned + consumeToken + registerWorker: the agent holds a session. */
    async function registered(overrides: Partial<JobSpec> = {}, session = "session") {
      const p = await provisioned(overrides);
      assert.ok(await store.tokens.consume(p.tokenHash, clock.nowMs()));
      const worker = await store.attempts.register(p.worker.id, hashToken(session), "host-a", clock.nowMs());
      assert.ok(worker);
      return { ...p, worker };
    }

    async function job(id: string): Promise<JobRow> {
      const row = await store.jobs.get(id);
      assert.ok(row, `job ${id} exists`);
      return row;
    }

    async function worker(id: string): Promise<WorkerRow> {
      const row = await store.workers.get(id);
      assert.ok(row, `worker ${id} exists`);
      return row;
    }

    async function token(tokenHash: string) {
      const row = await store.tokens.getByHash(tokenHash);
      assert.ok(row, "token exists");
      return row;
    }

    describe("insertJob and getJob", () => {
      it("stores a job as queued and reads back what was given", async () => {
        const given = spec({
          command: ["sh", "-c", "echo $A"],
          provider: "docker",
          env: { A: "1" },
          labels: { team: "infra" },
          timeoutSeconds: 42,
          maxAttempts: 3,
          image: "alpine:3.20",
        });
        const inserted = await store.jobs.insert("job-1", given, clock.nowMs());
        const read = await job("job-1");
        assert.deepEqual(read, inserted);
        assert.equal(read.state, "queued");
        assert.deepEqual(JSON.parse(read.command), ["sh", "-c", "echo $A"]);
        assert.equal(read.script, "");
        assert.equal(read.provider, "docker");
        assert.deepEqual(JSON.parse(read.env), { A: "1" });
        assert.deepEqual(JSON.parse(read.labels), { team: "infra" });
        assert.equal(read.timeout_seconds, 42);
        assert.equal(read.max_attempts, 3);
        assert.equal(read.image, "alpine:3.20");
        assert.equal(read.attempts, 0);
        assert.equal(read.exit_code, null);
        assert.equal(read.finished_at, null);
        assert.equal(read.idempotency_key, null);
        assert.equal(read.created_at, clock.nowMs());
        assert.equal(read.not_before_ms, clock.nowMs(), "a new job is due at once");
        assert.equal(read.submitted_by, null, "no key submitted it");
      });

      it("records the name of the API key that submitted the job", async () => {
        const inserted = await store.jobs.insert("job-1", spec(), clock.nowMs(), "ci");
        assert.equal(inserted.submitted_by, "ci");
        assert.equal((await job("job-1")).submitted_by, "ci");
      });

      it("stores the exit codes a job retries and the job it reruns (none by default)", async () => {
        const first = await store.jobs.insert("job-1", spec({ maxAttempts: 3, retryOnExitCodes: "4, 3" }), clock.nowMs());
        assert.deepEqual([first.retry_on_exit_codes, first.rerun_of], ["3,4", null]);
        const rerun = await store.jobs.insert("job-2", spec({ maxAttempts: 3, retryOnExitCodes: "3,4" }), clock.nowMs(), "ci", "job-1");
        assert.deepEqual(await job("job-2"), rerun);
        assert.deepEqual([rerun.retry_on_exit_codes, rerun.rerun_of, rerun.submitted_by], ["3,4", "job-1", "ci"]);
        assert.equal((await submit()).retry_on_exit_codes, "");
      });

      it("stores the job's trace (none by default) and keeps the first submit's for a reused idempotency key", async () => {
        assert.deepEqual([(await submit()).trace_id, (await submit()).trace_parent], ["", ""]);
        const trace = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
        const first = await store.jobs.insert("job-t", { ...spec({ idempotencyKey: "k" }), trace }, clock.nowMs());
        assert.deepEqual([first.trace_id, first.trace_parent], [trace.traceId, trace.traceParent]);
        const again = await store.jobs.insert("job-u", { ...spec({ idempotencyKey: "k" }), trace: { traceId: "1".repeat(32), traceParent: "" } }, clock.nowMs());
        assert.deepEqual([again.id, again.trace_id, again.trace_parent], ["job-t", trace.traceId, trace.traceParent]);
      });

      it("returns undefined for an unknown job", async () => {
        assert.equal(await store.jobs.get("no-such-job"), undefined);
      });

      it("returns the first job for a reused idempotency key and stores no second one", async () => {
        const first = await store.jobs.insert("job-1", spec({ idempotencyKey: "submit-1" }), clock.nowMs());
        clock.advance(1000);
        const again = await store.jobs.insert("job-2", spec({ idempotencyKey: "submit-1", command: ["other"] }), clock.nowMs());
        assert.deepEqual(again, first);
        assert.equal(await store.jobs.get("job-2"), undefined);
        assert.equal(await store.countRows("jobs"), 1);
      });

      it("gives submits with one idempotency key issued back to back the same job, without an error", async () => {
        // Back to back, not concurrent: see "Issued back to back" in the header.
        const rows = await Promise.all(
          Array.from({ length: 5 }, (_, i) => store.jobs.insert(`job-${i}`, spec({ idempotencyKey: "retry-me" }), clock.nowMs())),
        );
        assert.equal(new Set(rows.map((r) => r.id)).size, 1);
        assert.equal(await store.countRows("jobs"), 1);
      });

      it("keeps idempotency keys per API key: one key's use of a key neither blocks another's nor is found by it", async () => {
        const a = await store.jobs.insert("job-a", spec({ idempotencyKey: "build-7" }), clock.nowMs(), "team-a");
        const b = await store.jobs.insert("job-b", spec({ idempotencyKey: "build-7", command: ["other"] }), clock.nowMs(), "team-b");
        const none = await store.jobs.insert("job-n", spec({ idempotencyKey: "build-7" }), clock.nowMs(), null);
        assert.deepEqual([a.id, b.id, none.id], ["job-a", "job-b", "job-n"]);
        assert.equal((await store.jobs.insert("job-a2", spec({ idempotencyKey: "build-7" }), clock.nowMs(), "team-a")).id, "job-a");
        assert.equal((await store.jobs.insert("job-b2", spec({ idempotencyKey: "build-7" }), clock.nowMs(), "team-b")).id, "job-b");
        assert.equal((await store.jobs.insert("job-n2", spec({ idempotencyKey: "build-7" }), clock.nowMs(), null)).id, "job-n");
        assert.equal(await store.countRows("jobs"), 3);
      });

      it("stores every job that has no idempotency key", async () => {
        await store.jobs.insert("job-1", spec(), clock.nowMs());
        await store.jobs.insert("job-2", spec(), clock.nowMs());
        assert.equal(await store.countRows("jobs"), 2);
      });
    });

    describe("listJobs", () => {
      it("lists the newest job first", async () => {
        for (const id of ["a", "b", "c"]) {
          await submit({}, id);
          clock.advance(1000);
        }
        assert.deepEqual((await store.jobs.list({ limit: 10 })).map((j) => j.id), ["c", "b", "a"]);
      });

      it("orders jobs created in the same millisecond by id, newest-id first", async () => {
        for (const id of ["b", "c", "a"]) await submit({}, id);
        assert.deepEqual((await store.jobs.list({ limit: 10 })).map((j) => j.id), ["c", "b", "a"]);
      });

      it("filters by state", async () => {
        await submit({}, "queued-1");
        await submit({}, "canceled-1");
        await submit({}, "failed-1");
        assert.ok(await store.jobs.transition("canceled-1", "canceled", clock.nowMs()));
        assert.ok(await store.jobs.transition("failed-1", "failed", clock.nowMs()));
        assert.deepEqual((await store.jobs.list({ states: ["canceled"], limit: 10 })).map((j) => j.id), ["canceled-1"]);
        assert.deepEqual(
          (await store.jobs.list({ states: ["canceled", "failed"], limit: 10 })).map((j) => j.id).sort(),
          ["canceled-1", "failed-1"],
        );
        assert.equal((await store.jobs.list({ states: [], limit: 10 })).length, 3, "an empty filter is no filter");
      });

      it("filters by provider", async () => {
        await submit({ provider: "local" }, "l1");
        await submit({ provider: "docker" }, "d1");
        await submit({ provider: "docker" }, "d2");
        assert.deepEqual((await store.jobs.list({ provider: "docker", limit: 10 })).map((j) => j.id).sort(), ["d1", "d2"]);
        assert.equal((await store.jobs.list({ provider: "kubernetes", limit: 10 })).length, 0);
      });

      it("pages with `before` through every job exactly once, also across equal creation times", async () => {
        const created: string[] = [];
        for (let i = 0; i < 7; i++) {
          const row = await submit();
          created.push(row.id);
          if (i % 3 === 2) clock.advance(1000); // groups of three share a creation time
        }
        const seen: string[] = [];
        let before: { createdAt: number; id: string } | undefined;
        for (;;) {
          const page = await store.jobs.list({ limit: 2, before });
          if (page.length === 0) break;
          assert.ok(page.length <= 2);
          seen.push(...page.map((j) => j.id));
          const last = page[page.length - 1];
          before = { createdAt: last.created_at, id: last.id };
        }
        assert.deepEqual(seen, [...created].reverse());
      });

      it("respects the limit", async () => {
        for (let i = 0; i < 5; i++) await submit();
        assert.equal((await store.jobs.list({ limit: 3 })).length, 3);
      });
    });

    describe("search", () => {
      it("finds jobs by id prefix through the primary key, whatever their age, at most the limit", async () => {
        for (const id of ["ab12-0001", "ab12-0002", "ab13-0001", "ff00-0001"]) {
          await submit({}, id);
          clock.advance(1000);
        }
        assert.deepEqual((await store.jobs.listByIdPrefix("ab12", 10)).map((j) => j.id), ["ab12-0001", "ab12-0002"]);
        assert.deepEqual((await store.jobs.listByIdPrefix("ab1", 10)).map((j) => j.id), ["ab12-0001", "ab12-0002", "ab13-0001"]);
        assert.equal((await store.jobs.listByIdPrefix("a", 2)).length, 2, "at most the limit");
        assert.deepEqual(await store.jobs.listByIdPrefix("ab12-0001x", 10), [], "no id has that prefix");
        assert.deepEqual(await store.jobs.listByIdPrefix("AB12%", 10), [], "only id characters are looked up");
      });

      it("finds jobs whose command or script contains the text, newest first, examining at most the bound", async () => {
        for (let i = 0; i < 10; i++) {
          await submit({ command: ["echo", i % 3 === 0 ? `Needle ${i}` : `hay ${i}`] }, `job-${i}`);
          clock.advance(1000);
        }
        await submit({ command: [], script: "set -e\nrun the needle here" }, "script-job");
        const all = await store.jobs.searchCommands({ text: "needle", limit: 10, examineLimit: 100 });
        assert.deepEqual(all.jobs.map((j) => j.id), ["script-job", "job-9", "job-6", "job-3", "job-0"]);
        assert.deepEqual([all.examined, all.isPartial, all.next], [11, false, null], "history examined to its end");
        assert.deepEqual((await store.jobs.searchCommands({ text: "echo needle 6", limit: 10, examineLimit: 100 })).jobs.map((j) => j.id), ["job-6"], "arguments joined by spaces");

        // The bound: 4 examined (script-job, job-9, 8, 7) then continue from job-7.
        const first = await store.jobs.searchCommands({ text: "needle", limit: 10, examineLimit: 4 });
        assert.deepEqual(first.jobs.map((j) => j.id), ["script-job", "job-9"]);
        assert.deepEqual([first.examined, first.isPartial, first.next?.id], [4, true, "job-7"]);
        const second = await store.jobs.searchCommands({ text: "needle", limit: 10, examineLimit: 4, before: first.next! });
        assert.deepEqual(second.jobs.map((j) => j.id), ["job-6", "job-3"]);

        // A full page continues after its last match.
        const page = await store.jobs.searchCommands({ text: "needle", limit: 2, examineLimit: 100 });
        assert.deepEqual([page.jobs.map((j) => j.id), page.isPartial, page.next?.id], [["script-job", "job-9"], false, "job-9"]);
        const rest = await store.jobs.searchCommands({ text: "needle", limit: 2, examineLimit: 100, before: page.next! });
        assert.deepEqual(rest.jobs.map((j) => j.id), ["job-6", "job-3"]);
      });

      it("applies the listing's filters to the command search", async () => {
        await submit({ provider: "docker", command: ["make", "test"], labels: { team: "a" } }, "d1");
        await submit({ provider: "local", command: ["make", "test"], labels: { team: "a" } }, "l1");
        await submit({ provider: "local", command: ["make", "test"], labels: { team: "b" } }, "l2");
        assert.ok(await store.jobs.transition("l2", "canceled", clock.nowMs()));
        const ids = async (q: Partial<Parameters<typeof store.jobs.searchCommands>[0]>) =>
          (await store.jobs.searchCommands({ text: "make", limit: 10, examineLimit: 100, ...q })).jobs.map((j) => j.id).sort();
        assert.deepEqual(await ids({ provider: "docker" }), ["d1"]);
        assert.deepEqual(await ids({ states: ["canceled"] }), ["l2"]);
        assert.deepEqual(await ids({ labels: [["team", "a"]] }), ["d1", "l1"]);
      });
    });

    describe("the claim: which job", () => {
      /** The job the reconciler's claim takes next of `provider`, with its worker and token rows written. */
      const claimJob = async (provider: string, nowMs = clock.nowMs()) =>
        (await claimOne(store, provider, nowMs, (j) => prepareFor(j, hashToken(mintOtpToken()))))?.job ?? null;

      it("claims the oldest due job, moves it to provisioning and counts the attempt", async () => {
        await submit({}, "old");
        clock.advance(10);
        await submit({}, "new");
        const claimed = await claimJob("local");
        assert.ok(claimed);
        assert.equal(claimed.id, "old");
        assert.equal(claimed.state, "provisioning");
        assert.equal(claimed.attempts, 1);
        assert.equal(claimed.updated_at, clock.nowMs());
        assert.deepEqual(await job("old"), claimed);
        assert.equal((await job("new")).state, "queued");
      });

      it("returns null when nothing is queued", async () => {
        assert.equal(await claimJob("local"), null);
        await submit();
        assert.ok(await claimJob("local"));
        assert.equal(await claimJob("local"), null, "the only job was taken");
      });

      it("leaves a job alone until its not_before_ms (retry backoff)", async () => {
        await submit({}, "backing-off");
        const first = await claimJob("local");
        assert.ok(first);
        const retryAtMs = clock.nowMs() + 5000;
        assert.ok(await store.jobs.transition("backing-off", "queued", clock.nowMs(), { not_before_ms: retryAtMs }));
        clock.advance(10);
        await submit({}, "due");

        const claimed = await claimJob("local");
        assert.equal(claimed?.id, "due", "the older job is not due yet; the newer one is");
        assert.equal(await claimJob("local", retryAtMs - 1), null);
        const retried = await claimJob("local", retryAtMs);
        assert.equal(retried?.id, "backing-off");
        assert.equal(retried?.attempts, 2, "the retry is the second attempt");
      });

      it("only claims jobs of the provider it is given", async () => {
        await submit({ provider: "docker" }, "docker-job");
        clock.advance(10);
        await submit({ provider: "local" }, "local-job");
        assert.equal((await claimJob("local"))?.id, "local-job");
        assert.equal(await claimJob("local"), null);
        assert.equal(await claimJob("kubernetes"), null);
        assert.equal((await job("docker-job")).state, "queued");
        assert.equal((await claimJob("docker"))?.id, "docker-job");
      });

      it("never claims a job that is not queued", async () => {
        await submit({}, "canceled");
        assert.ok(await store.jobs.transition("canceled", "canceled", clock.nowMs()));
        assert.equal(await claimJob("local"), null);
        assert.equal((await job("canceled")).attempts, 0);
      });
    });

    describe("claimJobForWorker", () => {
      it("writes the worker row (provisioning) and the token row (hash only, no provider_resource_id)", async () => {
        const submitted = await submit({ provider: "docker" });
        const otp = mintOtpToken();
        const claimed = await claimOne(store, "docker", clock.nowMs(), (j) => prepareFor(j, hashToken(otp)));
        assert.ok(claimed);
        assert.equal(claimed.job.id, submitted.id);
        assert.equal(claimed.job.state, "provisioning");
        assert.equal(claimed.job.attempts, 1);

        const w = await worker(claimed.worker.id);
        assert.deepEqual(w, claimed.worker);
        assert.equal(w.state, "provisioning");
        assert.equal(w.job_id, submitted.id);
        assert.equal(w.attempt, 1);
        assert.equal(w.provider, "docker");
        assert.equal(w.name, workerName(w.id));
        assert.equal(w.provider_resource_id, null);
        assert.equal(w.resource_type, null);
        assert.equal(w.registration_deadline_ms, clock.nowMs() + REGISTRATION_MS);

        const t = await token(hashToken(otp));
        assert.equal(t.worker_id, w.id);
        assert.equal(t.job_id, submitted.id);
        assert.equal(t.attempt, 1);
        assert.equal(t.provider, "docker");
        assert.equal(t.provider_resource_id, null);
        assert.equal(t.resource_type, null);
        assert.equal(t.consumed_at, null);
        assert.equal(t.expires_at, clock.nowMs() + TOKEN_TTL_MS);
        assert.equal(Object.values(t).includes(otp), false, "the secret itself is stored nowhere");
      });

      it("hands the claimed job (with its new attempt number) to prepare", async () => {
        await submit({}, "j");
        const seen: JobRow[] = [];
        await claimOne(store, "local", clock.nowMs(), (j) => {
          seen.push(j);
          return prepareFor(j, hashToken(mintOtpToken()));
        });
        assert.equal(seen.length, 1);
        assert.equal(seen[0].id, "j");
        assert.equal(seen[0].attempts, 1);
        assert.equal(seen[0].state, "provisioning");
      });

      it("returns null without calling prepare when nothing is due", async () => {
        let called = false;
        const result = await claimOne(store, "local", clock.nowMs(), (j) => {
          called = true;
          return prepareFor(j, "x");
        });
        assert.equal(result, null);
        assert.equal(called, false);
      });

      it("leaves the job queued and writes nothing when prepare throws (one transaction)", async () => {
        await submit({}, "j");
        await assert.rejects(
          claimOne(store, "local", clock.nowMs(), () => {
            throw new Error("boom");
          }),
          /boom/,
        );
        const j = await job("j");
        assert.equal(j.state, "queued");
        assert.equal(j.attempts, 0);
        assert.equal(await store.countRows("workers"), 0);
        assert.equal(await store.countRows("otp_tokens"), 0);
      });

      it("rolls back the claim and the worker row when the token row cannot be written", async () => {
        const { tokenHash } = await provision();
        await submit({}, "second");
        // Reusing a token hash violates its uniqueness: the token insert fails after the worker insert.
        await assert.rejects(claimOne(store, "local", clock.nowMs(), (j) => prepareFor(j, tokenHash)));
        const j = await job("second");
        assert.equal(j.state, "queued");
        assert.equal(j.attempts, 0);
        assert.equal(await store.countRows("workers"), 1, "only the first job's worker");
        assert.equal(await store.countRows("otp_tokens"), 1);
      });

      it("claims each job once, with one worker each, when claims are issued back to back", async () => {
        // Back to back, not concurrent: see "Issued back to back" in the header.
        for (let i = 0; i < 20; i++) {
          await submit();
          clock.advance(1);
        }
        const claimer = async (): Promise<string[]> => {
          const mine: string[] = [];
          for (;;) {
            const claimed = await claimOne(store, "local", clock.nowMs(), (j) => prepareFor(j, hashToken(mintOtpToken())));
            if (!claimed) return mine;
            mine.push(claimed.job.id);
          }
        };
        const all = (await Promise.all(Array.from({ length: 8 }, claimer))).flat();
        assert.equal(all.length, 20);
        assert.equal(new Set(all).size, 20);
        assert.equal(await store.countRows("workers"), 20);
        assert.equal(await store.countRows("otp_tokens"), 20);
        for (const row of await store.jobs.list({ limit: 100 })) {
          assert.equal(row.state, "provisioning");
          assert.equal(row.attempts, 1, `job ${row.id} was claimed once`);
        }
      });
    });

    describe("transitionJob", () => {
      it("applies a legal transition with its patch", async () => {
        await submit({}, "j");
        clock.advance(500);
        const row = await store.jobs.transition("j", "failed", clock.nowMs(), { reason: "no capacity", finished_at: clock.nowMs() });
        assert.ok(row);
        assert.equal(row.state, "failed");
        assert.equal(row.reason, "no capacity");
        assert.equal(row.finished_at, clock.nowMs());
        assert.equal(row.updated_at, clock.nowMs());
        assert.deepEqual(await job("j"), row);
      });

      it("refuses an illegal transition: returns null and changes nothing", async () => {
        const before = await submit({}, "j");
        clock.advance(500);
        assert.equal(await store.jobs.transition("j", "succeeded", clock.nowMs(), { exit_code: 0, reason: "x" }), null);
        assert.equal(await store.jobs.transition("j", "running", clock.nowMs()), null);
        assert.deepEqual(await job("j"), before);
      });

      it("never rewrites a finished job", async () => {
        await submit({}, "j");
        const canceled = await store.jobs.transition("j", "canceled", clock.nowMs(), { reason: "user" });
        assert.ok(canceled);
        clock.advance(500);
        for (const to of ["queued", "provisioning", "running", "succeeded", "failed", "canceled", "timed_out"] as const) {
          assert.equal(await store.jobs.transition("j", to, clock.nowMs(), { reason: "late" }), null, `canceled -> ${to}`);
        }
        assert.deepEqual(await job("j"), canceled);
      });

      it("returns null for an unknown job", async () => {
        assert.equal(await store.jobs.transition("nope", "canceled", clock.nowMs()), null);
      });

      it("with an attempt, only applies while that attempt is the current one", async () => {
        await submit({}, "j");
        assert.ok(await claimOne(store, "local", clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())))); // attempt 1
        const before = await job("j");
        assert.equal(await store.jobs.transition("j", "failed", clock.nowMs(), {}, 2), null, "attempt 2 never started");
        assert.deepEqual(await job("j"), before);
        assert.ok(await store.jobs.transition("j", "queued", clock.nowMs(), {}, 1));
        assert.ok(await claimOne(store, "local", clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())))); // attempt 2
        assert.equal(await store.jobs.transition("j", "failed", clock.nowMs(), {}, 1), null, "attempt 1 is over");
        assert.equal((await store.jobs.transition("j", "failed", clock.nowMs(), {}, 2))?.state, "failed");
      });

      it("lets exactly one of two transitions issued back to back win", async () => {
        // Back to back, not concurrent: see "Issued back to back" in the header.
        await submit({}, "j");
        const [a, b] = await Promise.all([
          store.jobs.transition("j", "canceled", clock.nowMs(), { reason: "a" }),
          store.jobs.transition("j", "canceled", clock.nowMs(), { reason: "b" }),
        ]);
        assert.equal([a, b].filter((r) => r !== null).length, 1);
      });
    });

    describe("recordProvisioned", () => {
      it("records provider_resource_id and resource_type on both the worker and the token, and the worker waits", async () => {
        const { worker: w, tokenHash } = await provision();
        clock.advance(200);
        const row = await store.attempts.recordProvisioned(w.id, "a".repeat(64), "container_id", clock.nowMs());
        assert.ok(row);
        assert.equal(row.state, "waiting");
        assert.equal(row.provider_resource_id, "a".repeat(64));
        assert.equal(row.resource_type, "container_id");
        assert.equal(row.provisioned_at, clock.nowMs());
        assert.deepEqual(await worker(w.id), row);
        const t = await token(tokenHash);
        assert.equal(t.provider_resource_id, "a".repeat(64));
        assert.equal(t.resource_type, "container_id");
        assert.equal(t.consumed_at, null);
      });

      it("on a worker already sent to destroying, returns null but still records what was created", async () => {
        const { worker: w, tokenHash } = await provision();
        assert.ok(await store.workers.transition(w.id, "destroying"));
        const row = await store.attempts.recordProvisioned(w.id, "hodei-worker-x", "pod_name", clock.nowMs());
        assert.equal(row, null);
        const after = await worker(w.id);
        assert.equal(after.state, "destroying", "the worker is not resurrected");
        assert.equal(after.provider_resource_id, "hodei-worker-x", "so that it can be destroyed");
        assert.equal(after.resource_type, "pod_name");
        assert.equal((await token(tokenHash)).provider_resource_id, "hodei-worker-x");
      });

      it("returns null for a worker that is already waiting, keeping its provider_resource_id", async () => {
        const { worker: w } = await provisioned();
        assert.equal(await store.attempts.recordProvisioned(w.id, "999", "process_id", clock.nowMs()), null);
        assert.equal((await worker(w.id)).provider_resource_id, "12345");
      });
    });

    describe("consumeToken", () => {
      it("succeeds once and resolves the worker, job, attempt and provider_resource_id; a replay gets null", async () => {
        const { job: j, worker: w, tokenHash } = await provisioned();
        clock.advance(100);
        const consumed = await store.tokens.consume(tokenHash, clock.nowMs());
        assert.ok(consumed);
        assert.equal(consumed.worker_id, w.id);
        assert.equal(consumed.job_id, j.id);
        assert.equal(consumed.attempt, 1);
        assert.equal(consumed.provider_resource_id, "12345");
        assert.equal(consumed.consumed_at, clock.nowMs());
        clock.advance(100);
        assert.equal(await store.tokens.consume(tokenHash, clock.nowMs()), null);
        assert.equal((await token(tokenHash)).consumed_at, clock.nowMs() - 100, "the replay changed nothing");
      });

      it("lets exactly one of several redemptions issued back to back succeed", async () => {
        // Back to back, not concurrent: see "Issued back to back" in the header.
        const { tokenHash } = await provisioned();
        const results = await Promise.all(Array.from({ length: 6 }, () => store.tokens.consume(tokenHash, clock.nowMs())));
        assert.equal(results.filter((r) => r !== null).length, 1);
      });

      it("refuses an expired token and leaves it unconsumed", async () => {
        const { tokenHash } = await provisioned();
        const expiresAt = (await token(tokenHash)).expires_at;
        assert.equal(await store.tokens.consume(tokenHash, expiresAt), null, "expired at exactly its expiry");
        assert.equal(await store.tokens.consume(tokenHash, expiresAt + 1), null);
        assert.equal((await token(tokenHash)).consumed_at, null);
        assert.ok(await store.tokens.consume(tokenHash, expiresAt - 1), "one millisecond earlier it was valid");
      });

      it("refuses an unknown hash and changes nothing", async () => {
        const { tokenHash } = await provisioned();
        assert.equal(await store.tokens.consume(hashToken(mintOtpToken()), clock.nowMs()), null);
        assert.equal(await store.tokens.consume("", clock.nowMs()), null);
        assert.equal((await token(tokenHash)).consumed_at, null);
      });

      it("refuses a token whose provider_resource_id is not recorded yet, and leaves it usable", async () => {
        const { worker: w, tokenHash } = await provision();
        assert.equal(await store.tokens.consume(tokenHash, clock.nowMs()), null);
        assert.equal((await token(tokenHash)).consumed_at, null);
        await store.attempts.recordProvisioned(w.id, "12345", "process_id", clock.nowMs());
        assert.ok(await store.tokens.consume(tokenHash, clock.nowMs()));
      });
    });

    describe("registerWorker", () => {
      it("moves a waiting worker to registered with its session hash", async () => {
        const { worker: w, tokenHash } = await provisioned();
        assert.ok(await store.tokens.consume(tokenHash, clock.nowMs()));
        clock.advance(50);
        const row = await store.attempts.register(w.id, hashToken("session-1"), "box-1", clock.nowMs());
        assert.ok(row);
        assert.equal(row.state, "registered");
        assert.equal(row.session_hash, hashToken("session-1"));
        assert.equal(row.reported_hostname, "box-1");
        assert.equal(row.registered_at, clock.nowMs());
        assert.equal(row.last_heartbeat_ms, clock.nowMs());
        assert.deepEqual(await store.workers.getBySession(hashToken("session-1")), row);
      });

      it("refuses a worker that is not waiting yet (no provider_resource_id)", async () => {
        const { worker: w } = await provision();
        assert.equal(await store.attempts.register(w.id, hashToken("s"), "h", clock.nowMs()), null);
        const after = await worker(w.id);
        assert.equal(after.state, "provisioning");
        assert.equal(after.session_hash, null);
      });

      it("refuses a second registration and keeps the first session", async () => {
        const { worker: w } = await registered();
        assert.equal(await store.attempts.register(w.id, hashToken("other"), "h2", clock.nowMs()), null);
        const after = await worker(w.id);
        assert.equal(after.session_hash, hashToken("session"));
        assert.equal(after.reported_hostname, "host-a");
      });

      it("refuses a worker that is being destroyed", async () => {
        const { worker: w } = await provisioned();
        assert.ok(await store.workers.transition(w.id, "destroying"));
        assert.equal(await store.attempts.register(w.id, hashToken("s"), "h", clock.nowMs()), null);
        assert.equal((await worker(w.id)).state, "destroying");
      });
    });

    describe("reRegister and connectStream", () => {
      it("consume keeps the hash of the consuming agent's instance key", async () => {
        const { tokenHash } = await provisioned();
        assert.ok(await store.tokens.consume(tokenHash, clock.nowMs(), hashToken("instance-1")));
        assert.equal((await token(tokenHash)).instance_key_hash, hashToken("instance-1"));
      });

      it("replaces the session while the stream never connected and the deadline has not passed", async () => {
        const { worker: w } = await registered();
        clock.advance(10);
        const row = await store.attempts.reRegister(w.id, hashToken("session-2"), "host-b", clock.nowMs());
        assert.ok(row);
        assert.equal(row.state, "registered");
        assert.equal(row.session_hash, hashToken("session-2"));
        assert.equal(row.registered_at, w.registered_at, "registered_at keeps the first registration");
        assert.equal(await store.attempts.connectStream(hashToken("session"), clock.nowMs()), null, "the old session no longer opens a stream");
      });

      it("registers a worker still waiting (the server died between consuming the token and registering)", async () => {
        const { worker: w, tokenHash } = await provisioned();
        assert.ok(await store.tokens.consume(tokenHash, clock.nowMs(), hashToken("k")));
        const row = await store.attempts.reRegister(w.id, hashToken("s"), "h", clock.nowMs());
        assert.equal(row?.state, "registered");
        assert.equal(row?.registered_at, clock.nowMs());
      });

      it("refuses once the stream has connected, after the deadline, and after the attempt ended", async () => {
        const connected = await registered({}, "s-connected");
        clock.advance(5);
        const opened = await store.attempts.connectStream(hashToken("s-connected"), clock.nowMs());
        assert.equal(opened?.stream_connected_at, clock.nowMs());
        clock.advance(5);
        assert.equal((await store.attempts.connectStream(hashToken("s-connected"), clock.nowMs()))?.stream_connected_at, clock.nowMs() - 5, "the first connection is kept");
        assert.equal(await store.attempts.reRegister(connected.worker.id, hashToken("x1"), "h", clock.nowMs()), null);

        const late = await registered({}, "s-late");
        assert.equal(await store.attempts.reRegister(late.worker.id, hashToken("x2"), "h", late.worker.registration_deadline_ms), null);

        const ended = await registered({}, "s-ended");
        await store.attempts.end(ended.worker, "failed", clock.nowMs(), {}, "lost");
        assert.equal(await store.attempts.reRegister(ended.worker.id, hashToken("x3"), "h", clock.nowMs()), null);
        assert.equal(await store.attempts.connectStream(hashToken("s-ended"), clock.nowMs()), null);
        assert.equal((await worker(ended.worker.id)).session_hash, hashToken("s-ended"), "a refused repeat changes nothing");
      });
    });

    describe("markDispatched", () => {
      it("moves the job provisioning -> running and the worker registered -> running together", async () => {
        const { job: j, worker: w } = await registered();
        clock.advance(10);
        assert.equal(await store.attempts.dispatch(w, clock.nowMs()), true);
        const jobAfter = await job(j.id);
        const workerAfter = await worker(w.id);
        assert.equal(jobAfter.state, "running");
        assert.equal(jobAfter.updated_at, clock.nowMs());
        assert.equal(workerAfter.state, "running");
        assert.equal(workerAfter.started_at, clock.nowMs());
      });

      it("does nothing if the job was canceled meanwhile", async () => {
        const { job: j, worker: w } = await registered();
        assert.ok(await store.jobs.transition(j.id, "canceled", clock.nowMs(), { reason: "user" }));
        assert.equal(await store.attempts.dispatch(w, clock.nowMs()), false);
        assert.equal((await job(j.id)).state, "canceled");
        const workerAfter = await worker(w.id);
        assert.equal(workerAfter.state, "registered");
        assert.equal(workerAfter.started_at, null);
      });

      it("answers with the rows it wrote when asked (no read after the write), and null when it lost", async () => {
        const { job: j, worker: w } = await registered();
        clock.advance(10);
        const rows = await store.attempts.dispatchReturning(w, clock.nowMs());
        assert.deepEqual(rows, { job: await job(j.id), worker: await worker(w.id) });
        assert.equal(rows?.job.state, "running");
        assert.equal(rows?.worker.started_at, clock.nowMs());
        assert.equal(await store.attempts.dispatchReturning(w, clock.nowMs()), null, "a second dispatch loses");
      });

      it("does nothing twice: a second dispatch returns false", async () => {
        const { worker: w } = await registered();
        assert.equal(await store.attempts.dispatch(w, clock.nowMs()), true);
        assert.equal(await store.attempts.dispatch(w, clock.nowMs()), false);
      });

      it("changes neither row when the worker already left registered", async () => {
        const { job: j, worker: w } = await registered();
        assert.ok(await store.workers.transition(w.id, "destroying"));
        assert.equal(await store.attempts.dispatch(w, clock.nowMs()), false, "losing the race is a value");
        assert.equal((await job(j.id)).state, "provisioning", "the job move was rolled back");
        assert.equal((await worker(w.id)).state, "destroying");
      });
    });

    describe("endAttempt", () => {
      it("ends the job, moves the worker to destroying and returns the job", async () => {
        const { job: j, worker: w } = await registered();
        await store.attempts.dispatch(w, clock.nowMs());
        clock.advance(1000);
        const ended = await store.attempts.end(w, "succeeded", clock.nowMs(), { exit_code: 0, finished_at: clock.nowMs() }, "");
        assert.ok(ended);
        assert.equal(ended.state, "succeeded");
        assert.equal(ended.exit_code, 0);
        assert.equal(ended.finished_at, clock.nowMs());
        assert.deepEqual(await job(j.id), ended);
        const workerAfter = await worker(w.id);
        assert.equal(workerAfter.state, "destroying");
        assert.equal(workerAfter.finished_at, clock.nowMs());
      });

      it("records why the worker's attempt ended", async () => {
        const { worker: w } = await provisioned();
        await store.attempts.end(w, "failed", clock.nowMs(), { reason: "never registered" }, "registration deadline passed");
        assert.equal((await worker(w.id)).failure_reason, "registration deadline passed");
      });

      it("keeps the command's exit code on the worker, for a retried attempt as for the last", async () => {
        const { job: j, worker: first } = await registered({ maxAttempts: 2, retryOnExitCodes: "3" });
        assert.equal((await worker(first.id)).exit_code, null, "none before the command exits");
        await store.attempts.dispatch(first, clock.nowMs());
        const requeued = await store.attempts.end(first, "queued", clock.nowMs(), { reason: "attempt 1 failed" }, "exited with code 3", false, 3);
        assert.equal(requeued?.exit_code, null, "the job's exit code is its final answer only");
        assert.deepEqual([(await worker(first.id)).exit_code, (await worker(first.id)).failure_reason], [3, "exited with code 3"]);
        const second = await claimOne(store, "local", clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())));
        assert.ok(second);
        assert.equal(second.worker.exit_code, null);
        await store.attempts.end(second.worker, "failed", clock.nowMs(), { exit_code: 3 }, "", false, 3);
        assert.equal((await worker(second.worker.id)).exit_code, 3);
        assert.equal((await job(j.id)).exit_code, 3);
      });

      it("returns null the second time and leaves the first result", async () => {
        const { job: j, worker: w } = await registered();
        await store.attempts.dispatch(w, clock.nowMs());
        assert.ok(await store.attempts.end(w, "succeeded", clock.nowMs(), { exit_code: 0 }, ""));
        assert.equal(await store.attempts.end(w, "failed", clock.nowMs(), { exit_code: 1 }, "late"), null);
        const after = await job(j.id);
        assert.equal(after.state, "succeeded");
        assert.equal(after.exit_code, 0);
      });

      it("is guarded by the attempt: a worker of an earlier attempt cannot end the current one", async () => {
        const { job: j, worker: first } = await provisioned();
        // The first attempt is lost and retried: the job is queued again and claimed for attempt 2.
        assert.ok(await store.attempts.end(first, "queued", clock.nowMs(), {}, "worker lost"));
        const second = await claimOne(store, "local", clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())));
        assert.equal(second?.job.attempts, 2);
        const before = await job(j.id);
        assert.equal(await store.attempts.end(first, "failed", clock.nowMs(), { exit_code: 1 }, "late result"), null);
        assert.deepEqual(await job(j.id), before);
        assert.equal((await worker(second!.worker.id)).state, "provisioning", "the new worker is untouched");
      });

      it("expires an unconsumed token so that it can never be redeemed", async () => {
        const { worker: w, tokenHash } = await provisioned();
        clock.advance(100);
        await store.attempts.end(w, "canceled", clock.nowMs(), { reason: "user" }, "canceled");
        const t = await token(tokenHash);
        assert.equal(t.expires_at, clock.nowMs());
        assert.equal(t.consumed_at, null);
        assert.equal(await store.tokens.consume(tokenHash, clock.nowMs()), null);
      });

      it("leaves a consumed token's record as it was", async () => {
        const { worker: w, tokenHash } = await registered();
        const before = await token(tokenHash);
        clock.advance(100);
        await store.attempts.end(w, "failed", clock.nowMs(), {}, "lost");
        assert.deepEqual(await token(tokenHash), before);
      });
    });

    describe("end of an attempt not counted (its provider's loss)", () => {
      it("counts it in uncounted_attempts and leaves max_attempts as the user set it", async () => {
        const { job: j, worker: w } = await provisioned({ maxAttempts: 2 });
        const ended = await store.attempts.end(w, "queued", clock.nowMs(), { reason: "docker unavailable" }, "docker unavailable", true);
        assert.equal(ended?.uncounted_attempts, 1);
        assert.equal(ended?.max_attempts, 2);
        assert.equal(ended?.attempts, 1);
        assert.equal((await job(j.id)).state, "queued");
      });
    });

    describe("cancel", () => {
      it("cancels the job, destroys workers without an agent, revokes unused tokens, and gives connected ones a stop deadline", async () => {
        const waiting = await provisioned();
        clock.advance(10);
        const canceled = await store.attempts.cancel(waiting.job.id, "canceled by user", clock.nowMs(), clock.nowMs() + 5000);
        assert.equal(canceled?.job.state, "canceled");
        assert.equal(canceled?.job.reason, "canceled by user");
        assert.equal(canceled?.job.finished_at, clock.nowMs());
        assert.deepEqual(canceled?.workers.map((w) => w.state), ["destroying"]);
        assert.equal((await token(waiting.tokenHash)).expires_at, clock.nowMs(), "the unused token is revoked");

        const connected = await registered();
        await store.attempts.dispatch(connected.worker, clock.nowMs());
        const stopAt = clock.nowMs() + 5000;
        const second = await store.attempts.cancel(connected.job.id, "canceled by user", clock.nowMs(), stopAt);
        const w = second?.workers[0];
        assert.equal(w?.state, "running", "its agent may flush and report first");
        assert.equal(w?.stop_deadline_ms, stopAt);
      });

      it("answers null for a job that already ended and changes nothing", async () => {
        const { job: j, worker: w } = await registered();
        await store.attempts.dispatch(w, clock.nowMs());
        await store.attempts.end(w, "succeeded", clock.nowMs(), { exit_code: 0 }, "");
        const before = await job(j.id);
        assert.equal(await store.attempts.cancel(j.id, "late", clock.nowMs(), clock.nowMs()), null);
        assert.deepEqual(await job(j.id), before);
      });
    });

    describe("workers.listPage and jobs.noteWaiting", () => {
      it("walks every worker of some states in id order, a page at a time", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) ids.push((await provisioned()).worker.id);
        const seen: string[] = [];
        let after = "";
        for (;;) {
          const page = await store.workers.listPage(["waiting"], after, 2);
          seen.push(...page.map((w) => w.id));
          if (page.length < 2) break;
          after = page[page.length - 1].id;
        }
        assert.deepEqual(seen, [...ids].sort());
        assert.deepEqual(await store.workers.listPage(["running"], "", 10), []);
      });

      it("notes why queued jobs of one provider wait, and only theirs", async () => {
        const docker = await submit({ provider: "docker" });
        const local = await submit({ provider: "local" });
        await store.jobs.noteWaiting("docker", "waiting: docker is unavailable");
        assert.equal((await job(docker.id)).reason, "waiting: docker is unavailable");
        assert.equal((await job(local.id)).reason, "");
      });
    });

    describe("resources: provider details and a worker waiting for its provider", () => {
      it("stores a job's pull policy, node selector and tolerations as given", async () => {
        const tolerations: JobSpec["tolerations"] = [{ key: "gpu", operator: "Exists", value: "", effect: "NoSchedule" }];
        const j = await submit({ pullPolicy: "never", nodeSelector: { disktype: "ssd" }, tolerations });
        const row = await job(j.id);
        assert.equal(row.pull_policy, "never");
        assert.deepEqual(JSON.parse(row.node_selector), { disktype: "ssd" });
        assert.deepEqual(JSON.parse(row.tolerations), tolerations);
      });

      it("records how the provider applied the job's resource limits with the provider_resource_id", async () => {
        const p = await provision();
        const row = await store.attempts.recordProvisioned(p.worker.id, "12345", "process_id", clock.nowMs(), "memory 64 MiB enforced");
        assert.equal(row?.resources_applied, "memory 64 MiB enforced");
      });

      it("notes what a waiting worker waits for on it and its job, and moves its deadline and its token's expiry", async () => {
        const p = await provisioned();
        const since = clock.nowMs();
        clock.advance(5000);
        const deadline = clock.nowMs() + REGISTRATION_MS;
        const noted = await store.attempts.notePending(p.worker, "unschedulable", since, deadline);
        assert.equal(noted?.pending_reason, "unschedulable");
        assert.equal(noted?.pending_since_ms, since);
        assert.equal(noted?.registration_deadline_ms, deadline);
        assert.equal((await job(p.job.id)).reason, "waiting: unschedulable");
        // p.worker's token expires at TOKEN_TTL_MS, not at its deadline: only a token whose expiry is the deadline moves.
        assert.equal((await token(p.tokenHash)).expires_at, since + TOKEN_TTL_MS);
        const again = await store.attempts.notePending(noted!, "still unschedulable", clock.nowMs(), deadline + 1000);
        assert.equal(again?.pending_since_ms, since, "since when is kept from the first note");
        assert.equal((await job(p.job.id)).reason, "waiting: still unschedulable");
      });

      it("moves the expiry of a token that still has the worker's deadline, never a consumed or revoked one", async () => {
        const submitted = await submit();
        const otp = mintOtpToken();
        const claimed = await claimOne(store, "local", clock.nowMs(), (row) => {
          const prepared = prepareFor(row, hashToken(otp));
          return { worker: prepared.worker, token: { ...prepared.token, expiresAtMs: prepared.worker.registrationDeadlineMs } };
        });
        assert.equal(claimed?.job.id, submitted.id);
        const w = await store.attempts.recordProvisioned(claimed.worker.id, "pod-a", "pod_name", clock.nowMs());
        const later = clock.nowMs() + 10 * REGISTRATION_MS;
        assert.ok(await store.attempts.notePending(w!, "unschedulable", clock.nowMs(), later));
        assert.equal((await token(hashToken(otp))).expires_at, later);
        assert.ok(await store.attempts.end(await worker(claimed.worker.id), "failed", clock.nowMs(), {}, "lost"));
        assert.equal(await store.attempts.notePending(await worker(claimed.worker.id), "x", clock.nowMs(), later + 1), null, "a worker that no longer waits");
        assert.ok((await token(hashToken(otp))).expires_at <= clock.nowMs(), "the revoked token stays revoked");
      });

      it("clears the wait and the job's waiting reason, but not a reason set since", async () => {
        const p = await provisioned();
        const noted = await store.attempts.notePending(p.worker, "unschedulable", clock.nowMs(), clock.nowMs() + REGISTRATION_MS);
        const cleared = await store.attempts.clearPending(noted!);
        assert.equal(cleared?.pending_since_ms, null);
        assert.equal(cleared?.pending_reason, "");
        assert.equal((await job(p.job.id)).reason, "");
        assert.equal(await store.attempts.clearPending(cleared!), null, "nothing left to clear");
        const q = await provisioned();
        const waiting = await store.attempts.notePending(q.worker, "unschedulable", clock.nowMs(), clock.nowMs() + REGISTRATION_MS);
        assert.ok(await store.jobs.transition(q.job.id, "failed", clock.nowMs(), { reason: "canceled elsewhere" }));
        assert.ok(await store.attempts.clearPending(waiting!));
        assert.equal((await job(q.job.id)).reason, "canceled elsewhere");
      });
    });

    describe("logs", () => {
      const chunk = (seq: number, data: string | Buffer = `line ${seq}\n`, stream = "stdout") => ({
        seq,
        stream,
        data: typeof data === "string" ? Buffer.from(data) : data,
        timeMs: 1000 + seq,
      });
      const budget = (limitBytes: number) => ({ limitBytes, systemAllowanceBytes: 10, marker: "[cut]" });
      const texts = (rows: { data: Buffer }[]) => rows.map((r) => r.data.toString());
      const all = { attempt: 0, seq: 0 };

      it("stores chunks 1, 2, 3 and ignores a resent seq, keeping the first copy", async () => {
        const { job: j, worker: w } = await registered();
        assert.deepEqual(await store.logs.append(w.id, [chunk(1), chunk(2), chunk(3)], null), { kind: "stored", logSeq: 3, truncatedNow: false, isTruncated: false, storedBytes: 21, logBytes: 21 });
        assert.deepEqual(await store.logs.append(w.id, [chunk(2, "resent\n"), chunk(3, "resent\n"), chunk(4)], null), {
          kind: "stored",
          logSeq: 4,
          truncatedNow: false,
          isTruncated: false,
          storedBytes: 7,
          logBytes: 28,
        });
        assert.deepEqual(await store.logs.append(w.id, [chunk(4, "again\n")], null), { kind: "stored", logSeq: 4, truncatedNow: false, isTruncated: false, storedBytes: 0, logBytes: 28 });
        const rows = await store.logs.read(j.id, all, 100);
        assert.deepEqual(texts(rows), ["line 1\n", "line 2\n", "line 3\n", "line 4\n"]);
        assert.equal(rows[0].stream, "stdout");
        assert.equal(rows[0].time_ms, 1001);
        assert.equal(rows[0].attempt, 1);
        const after = await worker(w.id);
        assert.equal(after.log_seq, 4);
        assert.equal(after.log_bytes, 4 * "line 1\n".length);
      });

      it("stores the bytes exactly as given, also bytes that are not UTF-8", async () => {
        const { job: j, worker: w } = await registered();
        const raw = Buffer.from([0x41, 0xff, 0xfe, 0x42, 0x00, 0xc3]);
        await store.logs.append(w.id, [chunk(1, raw)], null);
        const [row] = await store.logs.read(j.id, all, 10);
        assert.ok(Buffer.isBuffer(row.data));
        assert.deepEqual([...row.data], [...raw]);
      });

      it("refuses a batch whose first new chunk skips a seq, writing nothing", async () => {
        const { job: j, worker: w } = await registered();
        await store.logs.append(w.id, [chunk(1)], null);
        assert.deepEqual(await store.logs.append(w.id, [chunk(3)], null), { kind: "gap", logSeq: 1, seq: 3 });
        assert.deepEqual(await store.logs.append(w.id, [chunk(2), chunk(4)], null), { kind: "gap", logSeq: 2, seq: 4 });
        assert.deepEqual(texts(await store.logs.read(j.id, all, 10)), ["line 1\n"], "the batch with a gap stored nothing, not even its first chunk");
        assert.equal((await worker(w.id)).log_seq, 1);
      });

      it("accepts nothing for a worker whose attempt has ended, or that never registered", async () => {
        const { job: j, worker: w } = await registered();
        await store.attempts.end(w, "failed", clock.nowMs(), {}, "lost");
        assert.deepEqual(await store.logs.append(w.id, [chunk(1)], null), { kind: "ended", state: "destroying" });
        const waiting = await provisioned();
        assert.deepEqual(await store.logs.append(waiting.worker.id, [chunk(1)], null), { kind: "ended", state: "waiting" });
        assert.equal(await store.countRows("job_logs"), 0);
        assert.equal((await worker(w.id)).log_seq, 0);
        assert.equal((await job(j.id)).logs_truncated, 0);
      });

      it("lets exactly one of two concurrent appends of the same seq store it", async () => {
        const { job: j, worker: w } = await registered();
        const results = await Promise.all([store.logs.append(w.id, [chunk(1, "a")], null), store.logs.append(w.id, [chunk(1, "b")], null)]);
        assert.deepEqual(results.map((r) => r.kind), ["stored", "stored"], "the second sees a resend and is acknowledged");
        assert.equal((await store.logs.read(j.id, all, 10)).length, 1);
        assert.equal((await worker(w.id)).log_seq, 1);
      });

      it("stores at most limit + allowance bytes, the marker in place of the first chunk that does not fit, then only acknowledges", async () => {
        const { job: j, worker: w } = await registered();
        // limit 20 + allowance 10 = 30 bytes at most; 25 before the 5-byte marker
        const outcome = await store.logs.append(w.id, [chunk(1, "x".repeat(20)), chunk(2, "yyyyy"), chunk(3, "z"), chunk(4, "zz")], budget(20));
        assert.deepEqual(outcome, { kind: "stored", logSeq: 4, truncatedNow: true, isTruncated: true, storedBytes: 30, logBytes: 30 });
        assert.deepEqual(await store.logs.append(w.id, [chunk(5, "w".repeat(1000))], budget(20)), { kind: "stored", logSeq: 5, truncatedNow: false, isTruncated: true, storedBytes: 0, logBytes: 30 });
        const rows = await store.logs.read(j.id, all, 10);
        assert.deepEqual(
          rows.map((r) => [r.seq, r.stream, r.data.toString()]),
          [
            [1, "stdout", "x".repeat(20)],
            [2, "stdout", "yyyyy"],
            [3, "system", "[cut]"],
          ],
        );
        const after = await worker(w.id);
        assert.equal(after.log_seq, 5);
        assert.equal(after.log_bytes, 30);
        assert.equal(after.log_truncated, 1);
        assert.equal((await job(j.id)).logs_truncated, 1, "the job shows it at once");
      });

      it("numbers the control plane's system line after the agent's chunks", async () => {
        const { job: j, worker: w } = await registered();
        await store.logs.append(w.id, [chunk(1), chunk(2)], null);
        assert.deepEqual(await store.logs.appendSystemLine(w.id, "[hodei] lost\n", 5000), { kind: "stored", logSeq: 3, truncatedNow: false, isTruncated: false, storedBytes: 13, logBytes: 27 });
        const rows = await store.logs.read(j.id, all, 10);
        assert.deepEqual(
          rows.map((r) => [r.seq, r.stream, r.data.toString()]),
          [
            [1, "stdout", "line 1\n"],
            [2, "stdout", "line 2\n"],
            [3, "system", "[hodei] lost\n"],
          ],
        );
        assert.deepEqual(await store.logs.append(w.id, [chunk(3, "late")], null), { kind: "stored", logSeq: 3, truncatedNow: false, isTruncated: false, storedBytes: 0, logBytes: 27 }, "the agent's late seq 3 is a duplicate now");
      });

      it("appends after a known position without reading it, and a stale one costs only a second try: the same rows and outcome", async () => {
        const { job: j, worker: w } = await registered();
        const known = (logSeq: number, logBytes: number, isTruncated = false) => ({ jobId: j.id, attempt: w.attempt, logSeq, logBytes, isTruncated });
        const first = await store.logs.append(w.id, [chunk(1), chunk(2)], null, undefined, known(0, 0));
        assert.deepEqual(first, { kind: "stored", logSeq: 2, truncatedNow: false, isTruncated: false, storedBytes: 14, logBytes: 14 });
        assert.deepEqual(await store.logs.append(w.id, [chunk(3)], null, undefined, known(2, 14)), { kind: "stored", logSeq: 3, truncatedNow: false, isTruncated: false, storedBytes: 7, logBytes: 21 });
        // A system line came between (log_seq 4): a writer that still believes 3 sends its seq 4,
        // which the row shows stored already.
        await store.logs.appendSystemLine(w.id, "[hodei] note\n", 5000);
        const stale = await store.logs.append(w.id, [chunk(4, "late\n")], null, undefined, known(3, 21));
        assert.deepEqual(stale, { kind: "stored", logSeq: 4, truncatedNow: false, isTruncated: false, storedBytes: 0, logBytes: 34 });
        assert.deepEqual(
          (await store.logs.read(j.id, all, 10)).map((r) => [r.seq, r.data.toString()]),
          [
            [1, "line 1\n"],
            [2, "line 2\n"],
            [3, "line 3\n"],
            [4, "[hodei] note\n"],
          ],
          "the stale try's row was rolled back with it",
        );
        const after = await worker(w.id);
        assert.equal(after.log_seq, 4);
        assert.equal(after.log_bytes, 34);
      });

      it("a known position does not let a writer log to an attempt that has ended, nor past the limit", async () => {
        const { job: j, worker: w } = await registered();
        const known = { jobId: j.id, attempt: w.attempt, logSeq: 0, logBytes: 0, isTruncated: false };
        assert.deepEqual(await store.logs.append(w.id, [chunk(1, "x".repeat(20)), chunk(2, "yyyyyyyyyyy")], budget(20), undefined, known), {
          kind: "stored",
          logSeq: 2,
          truncatedNow: true,
          isTruncated: true,
          storedBytes: 25,
          logBytes: 25,
        });
        assert.equal((await job(j.id)).logs_truncated, 1);
        await store.attempts.end(await worker(w.id), "failed", clock.nowMs(), {}, "lost");
        assert.deepEqual(await store.logs.append(w.id, [chunk(3)], null, undefined, { ...known, logSeq: 2, logBytes: 25, isTruncated: true }), { kind: "ended", state: "destroying" });
        assert.equal((await worker(w.id)).log_seq, 2);
        assert.equal((await store.logs.read(j.id, all, 10)).length, 2);
      });

      it("reads one job's chunks ordered by (attempt, seq) after a position, a page at a time", async () => {
        const a = await registered({}, "session-a");
        const b = await registered({}, "session-b");
        await store.logs.append(a.worker.id, [chunk(1, "a1"), chunk(2, "a2")], null);
        await store.logs.append(b.worker.id, [chunk(1, "b1")], null);
        // Attempt 1 of job a is lost and retried; its worker for attempt 2 logs too.
        assert.ok(await store.attempts.end(await worker(a.worker.id), "queued", clock.nowMs(), {}, "lost"));
        const second = await claimOne(store, "local", clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())));
        assert.equal(second?.job.id, a.job.id);
        assert.ok(await store.attempts.recordProvisioned(second.worker.id, "777", "process_id", clock.nowMs()));
        assert.ok(await store.attempts.register(second.worker.id, hashToken("second"), "h", clock.nowMs()));
        await store.logs.append(second.worker.id, [chunk(1, "a-retry-1"), chunk(2, "a-retry-2")], null);

        assert.deepEqual(texts(await store.logs.read(a.job.id, all, 100)), ["a1", "a2", "a-retry-1", "a-retry-2"]);
        const firstPage = await store.logs.read(a.job.id, all, 3);
        assert.deepEqual(texts(firstPage), ["a1", "a2", "a-retry-1"]);
        const last = firstPage[2];
        assert.deepEqual(texts(await store.logs.read(a.job.id, { attempt: last.attempt, seq: last.seq }, 3)), ["a-retry-2"]);
        assert.deepEqual(texts(await store.logs.read(a.job.id, { attempt: 1, seq: 1 }, 10)), ["a2", "a-retry-1", "a-retry-2"]);
        assert.deepEqual(await store.logs.read(a.job.id, { attempt: 2, seq: 2 }, 10), []);
        assert.deepEqual(texts(await store.logs.read(b.job.id, all, 100)), ["b1"]);
      });
    });
  });
}
