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
import { describeRetentionQueries } from "./retention.contract.js";
import type { JobRow, WorkerRow } from "./schema.js";
import type { NewToken, NewWorker, Store } from "./store.js";
import { describeWorkerQueries } from "./workers.contract.js";

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
      const claimed = await store.attempts.claim([submitted.provider], clock.nowMs(), (job) => prepareFor(job, hashToken(otp)));
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
    async function registered(overrides: Partial<JobSpec> = {}) {
      const p = await provisioned(overrides);
      assert.ok(await store.tokens.consume(p.tokenHash, clock.nowMs()));
      const worker = await store.attempts.register(p.worker.id, hashToken("session"), "host-a", clock.nowMs());
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

    describe("claimQueuedJob", () => {
      it("claims the oldest due job, moves it to provisioning and counts the attempt", async () => {
        await submit({}, "old");
        clock.advance(10);
        await submit({}, "new");
        const claimed = await store.jobs.claimQueued(["local"], clock.nowMs());
        assert.ok(claimed);
        assert.equal(claimed.id, "old");
        assert.equal(claimed.state, "provisioning");
        assert.equal(claimed.attempts, 1);
        assert.equal(claimed.updated_at, clock.nowMs());
        assert.deepEqual(await job("old"), claimed);
        assert.equal((await job("new")).state, "queued");
      });

      it("returns null when nothing is queued", async () => {
        assert.equal(await store.jobs.claimQueued(["local"], clock.nowMs()), null);
        await submit();
        assert.ok(await store.jobs.claimQueued(["local"], clock.nowMs()));
        assert.equal(await store.jobs.claimQueued(["local"], clock.nowMs()), null, "the only job was taken");
      });

      it("leaves a job alone until its not_before_ms (retry backoff)", async () => {
        await submit({}, "backing-off");
        const first = await store.jobs.claimQueued(["local"], clock.nowMs());
        assert.ok(first);
        const retryAtMs = clock.nowMs() + 5000;
        assert.ok(await store.jobs.transition("backing-off", "queued", clock.nowMs(), { not_before_ms: retryAtMs }));
        clock.advance(10);
        await submit({}, "due");

        const claimed = await store.jobs.claimQueued(["local"], clock.nowMs());
        assert.equal(claimed?.id, "due", "the older job is not due yet; the newer one is");
        assert.equal(await store.jobs.claimQueued(["local"], retryAtMs - 1), null);
        const retried = await store.jobs.claimQueued(["local"], retryAtMs);
        assert.equal(retried?.id, "backing-off");
        assert.equal(retried?.attempts, 2, "the retry is the second attempt");
      });

      it("only claims jobs of the providers it is given", async () => {
        await submit({ provider: "docker" }, "docker-job");
        clock.advance(10);
        await submit({ provider: "local" }, "local-job");
        assert.equal((await store.jobs.claimQueued(["local"], clock.nowMs()))?.id, "local-job");
        assert.equal(await store.jobs.claimQueued(["local", "kubernetes"], clock.nowMs()), null);
        assert.equal(await store.jobs.claimQueued([], clock.nowMs()), null);
        assert.equal((await job("docker-job")).state, "queued");
        assert.equal((await store.jobs.claimQueued(["kubernetes", "docker"], clock.nowMs()))?.id, "docker-job");
      });

      it("never claims a job that is not queued", async () => {
        await submit({}, "canceled");
        assert.ok(await store.jobs.transition("canceled", "canceled", clock.nowMs()));
        assert.equal(await store.jobs.claimQueued(["local"], clock.nowMs()), null);
        assert.equal((await job("canceled")).attempts, 0);
      });

      it("claims each job once when claims are issued back to back (8 claimers, 50 jobs)", async () => {
        // Back to back, not concurrent: see "Issued back to back" in the header.
        const jobIds: string[] = [];
        for (let i = 0; i < 50; i++) {
          jobIds.push((await submit()).id);
          clock.advance(1);
        }
        const claimer = async (): Promise<string[]> => {
          const mine: string[] = [];
          for (;;) {
            const claimed = await store.jobs.claimQueued(["local"], clock.nowMs());
            if (!claimed) return mine;
            mine.push(claimed.id);
          }
        };
        const results = await Promise.all(Array.from({ length: 8 }, claimer));
        const all = results.flat();
        assert.equal(all.length, 50, "every claim returned a distinct job");
        assert.deepEqual([...new Set(all)].sort(), jobIds.sort());
        for (const row of await store.jobs.list({ limit: 100 })) {
          assert.equal(row.state, "provisioning");
          assert.equal(row.attempts, 1, `job ${row.id} was claimed once`);
        }
      });
    });

    describe("claimJobForWorker", () => {
      it("writes the worker row (provisioning) and the token row (hash only, no provider_resource_id)", async () => {
        const submitted = await submit({ provider: "docker" });
        const otp = mintOtpToken();
        const claimed = await store.attempts.claim(["docker"], clock.nowMs(), (j) => prepareFor(j, hashToken(otp)));
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
        await store.attempts.claim(["local"], clock.nowMs(), (j) => {
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
        const result = await store.attempts.claim(["local"], clock.nowMs(), (j) => {
          called = true;
          return prepareFor(j, "x");
        });
        assert.equal(result, null);
        assert.equal(called, false);
      });

      it("leaves the job queued and writes nothing when prepare throws (one transaction)", async () => {
        await submit({}, "j");
        await assert.rejects(
          store.attempts.claim(["local"], clock.nowMs(), () => {
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
        await assert.rejects(store.attempts.claim(["local"], clock.nowMs(), (j) => prepareFor(j, tokenHash)));
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
            const claimed = await store.attempts.claim(["local"], clock.nowMs(), (j) => prepareFor(j, hashToken(mintOtpToken())));
            if (!claimed) return mine;
            mine.push(claimed.job.id);
          }
        };
        const all = (await Promise.all(Array.from({ length: 8 }, claimer))).flat();
        assert.equal(all.length, 20);
        assert.equal(new Set(all).size, 20);
        assert.equal(await store.countRows("workers"), 20);
        assert.equal(await store.countRows("otp_tokens"), 20);
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
        await store.jobs.claimQueued(["local"], clock.nowMs()); // attempt 1
        const before = await job("j");
        assert.equal(await store.jobs.transition("j", "failed", clock.nowMs(), {}, 2), null, "attempt 2 never started");
        assert.deepEqual(await job("j"), before);
        assert.ok(await store.jobs.transition("j", "queued", clock.nowMs(), {}, 1));
        await store.jobs.claimQueued(["local"], clock.nowMs()); // attempt 2
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
        const second = await store.attempts.claim(["local"], clock.nowMs(), (row) => prepareFor(row, hashToken(mintOtpToken())));
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

    describe("logs", () => {
      const chunk = (seq: number, data = `line ${seq}\n`, stream = "stdout") => ({ seq, stream, data, timeMs: 1000 + seq });

      it("stores chunks and ignores a resent seq, keeping the first copy", async () => {
        const j = await submit();
        await store.logs.append(j.id, 1, [chunk(1), chunk(2), chunk(3)]);
        await store.logs.append(j.id, 1, [chunk(2, "resent\n"), chunk(3, "resent\n"), chunk(4)]);
        const rows = await store.logs.read(j.id, 0, 100);
        assert.deepEqual(
          rows.map((r) => [r.seq, r.data]),
          [
            [1, "line 1\n"],
            [2, "line 2\n"],
            [3, "line 3\n"],
            [4, "line 4\n"],
          ],
        );
        assert.equal(rows[0].stream, "stdout");
        assert.equal(rows[0].time_ms, 1001);
        assert.equal(rows[0].attempt, 1);
      });

      it("accepts an empty batch", async () => {
        const j = await submit();
        await store.logs.append(j.id, 1, []);
        assert.equal(await store.countRows("job_logs"), 0);
      });

      it("keeps the seqs of different attempts apart", async () => {
        const j = await submit();
        await store.logs.append(j.id, 1, [chunk(1), chunk(2)]);
        await store.logs.append(j.id, 2, [chunk(1, "attempt two\n")]);
        assert.equal(await store.countRows("job_logs"), 3);
        assert.equal(await store.logs.maxSeq(j.id, 1), 2);
        assert.equal(await store.logs.maxSeq(j.id, 2), 1);
      });

      it("countLogChunks counts the chunks of one attempt up to a seq (complete when it equals it)", async () => {
        const j = await submit();
        await store.logs.append(j.id, 1, [chunk(1), chunk(2), chunk(4)]);
        await store.logs.append(j.id, 2, [chunk(3)]);
        assert.equal(await store.logs.count(j.id, 1, 2), 2, "complete up to 2");
        assert.equal(await store.logs.count(j.id, 1, 4), 3, "seq 3 is missing");
        assert.equal(await store.logs.count(j.id, 1, 0), 0);
        assert.equal(await store.logs.count(j.id, 3, 10), 0);
      });

      it("maxLogSeq is 0 when nothing is stored", async () => {
        const j = await submit();
        assert.equal(await store.logs.maxSeq(j.id, 1), 0);
        await store.logs.append(j.id, 1, [chunk(7), chunk(3)]);
        assert.equal(await store.logs.maxSeq(j.id, 1), 7);
      });

      it("readLogs returns one job's chunks in storage order after a cursor, a page at a time", async () => {
        const a = await submit();
        const b = await submit();
        await store.logs.append(a.id, 1, [chunk(1, "a1"), chunk(2, "a2")]);
        await store.logs.append(b.id, 1, [chunk(1, "b1")]);
        await store.logs.append(a.id, 2, [chunk(1, "a-retry-1")]);
        await store.logs.append(a.id, 1, [chunk(3, "a3")]);

        const all = await store.logs.read(a.id, 0, 100);
        assert.deepEqual(all.map((r) => r.data), ["a1", "a2", "a-retry-1", "a3"]);
        for (let i = 1; i < all.length; i++) assert.ok(all[i].id > all[i - 1].id, "cursors increase");

        const firstPage = await store.logs.read(a.id, 0, 2);
        assert.deepEqual(firstPage.map((r) => r.data), ["a1", "a2"]);
        const secondPage = await store.logs.read(a.id, firstPage[1].id, 2);
        assert.deepEqual(secondPage.map((r) => r.data), ["a-retry-1", "a3"]);
        assert.deepEqual(await store.logs.read(a.id, secondPage[1].id, 2), []);
        assert.deepEqual((await store.logs.read(b.id, 0, 100)).map((r) => r.data), ["b1"]);
      });
    });
  });
}
