/**
 * The query-plan audit: every statement the store executes while the whole store contract suite
 * runs is recorded (Kysely's `log` option), then explained with its own parameters (EXPLAIN QUERY
 * PLAN) against a database that holds a few hundred jobs with their workers, tokens and logs. A full
 * scan of an application table (`SCAN jobs`, without an index) fails the test unless the statement
 * is on ALLOWED_SCANS with the reason it is harmless. So a query added later without the index it
 * needs fails here, not in production after a year of history.
 *
 * It also fails when a store method is never called by the suite (a query nobody ran was never
 * audited) and when an allow-list entry matches no statement (the list stays true).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { CompiledQuery, type Kysely, type LogEvent } from "kysely";
import { ManualClock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { SecretBox } from "../core/secret-box.js";
import { hashToken } from "../core/token.js";
import { openDatabase } from "./database.js";
import type { Database } from "./schema.js";
import { describeStore } from "./store.contract.js";
import { Store } from "./store.js";
import { claimOne } from "../../test/fixtures/claim.js";

/**
 * Statements allowed to scan a table in full, each with why that cannot grow with history:
 * `{ sql: /^select .* from "meta"/, why: "a handful of rows, read once at start-up" }`.
 * Apart from a one-time migration, every statement of the store reads through an index
 * (migration 0007 added the missing ones). Note what the rule does not see: a scan *through* an index (`SCAN jobs USING
 * INDEX jobs_created` for the newest page, `count(*)` for tests) passes, and so would a search on
 * an index that matches most of the table; the retention and listing queries are written so that
 * SQLite picks a selective index (see store/retention.ts and JobQueries.list).
 * ListJobs' command search (JobQueries.searchCommands) runs list()'s own statements with a limit of
 * 5,000 rows examined and matches in code: bounded by that limit, not by an index on the text, and
 * so needs no entry here (its statements are list()'s, audited above and below).
 */
const ALLOWED_SCANS: { sql: RegExp; why: string }[] = [
  { sql: /^update job_logs set data = cast\(data as blob\) where typeof\(data\) = 'text'/, why: "migration 0004: runs once, when the database is upgraded" },
  { sql: /^select \* from "replicas"/, why: "one row per running replica (a handful); rows of replicas gone for 100 leases are removed" },
  { sql: /^delete from "replicas" where "renewed_at_ms" </, why: "the same handful of presence rows, once per full pass on the leader" },
];

/**
 * Statements on the path of every job (or of every pass) for which SQLite has more than one usable
 * index and, without statistics, may pick one that walks history: each must use the index named.
 * A SEARCH on the wrong index is not a SCAN, so the rule above would not see it; this list does.
 */
const EXPECTED_INDEXES: { sql: RegExp; index: string; why: string }[] = [
  {
    sql: /^with "picked" as materialized \(select "id" from "jobs" where "state" = 'queued'/,
    index: "jobs_queue",
    why: "the claim reads one provider's queue in its order (priority desc, created_at, id) without a sort; any other index of jobs walks finished jobs too, or sorts the queue",
  },
  {
    sql: /^with "picked" as materialized \(select "id" from "jobs" where "state" = 'queued'/,
    index: "workers_provider_state",
    why: "the claim counts the provider's live workers: by workers_resource (provider first) it would read every destroyed worker of the provider",
  },
  {
    sql: /^select "id", "finished_at" from "jobs" where "finished_at" </,
    index: "jobs_finished",
    why: "retention reads the oldest finished jobs; by state it would read and sort every finished job",
  },
  {
    sql: /^delete from "workers" where "job_id" in/,
    index: "workers_job",
    why: "retention deletes a batch's workers; by state it would walk every destroyed worker",
  },
  {
    sql: /^update "otp_tokens" set .* where "worker_id" = \?/,
    index: "otp_tokens_worker",
    why: "provisioning and the end of every attempt update the worker's token",
  },
  {
    sql: /^delete from "job_secrets" where "job_id" in/,
    index: "sqlite_autoindex_job_secrets_1",
    why: "the end of every job deletes its secrets (the table's primary key, job_id first)",
  },
  {
    sql: /^select \* from "job_secrets" where "job_id" = \?/,
    index: "sqlite_autoindex_job_secrets_1",
    why: "every dispatch reads the job's secrets",
  },
  {
    sql: /^select \* from "jobs" where "state" = \? order by "created_at" desc, "id" desc limit \?$/,
    index: "jobs_state_created_id",
    why: "ListJobs by state: the newest page of one state is one index range, no sort",
  },
  {
    sql: /^select \* from "jobs" where "provider" = \? order by "created_at" desc, "id" desc limit \?$/,
    index: "jobs_provider_created",
    why: "ListJobs by provider: the newest page of one provider is one index range; by jobs_created a rare provider walks the whole history",
  },
  {
    sql: /^select \* from "jobs" where "state" = '(queued|provisioning)' and "queue_deadline_ms" <= \?/,
    index: "jobs_queue_deadline",
    why: "every pass reads the jobs past their queue deadline: one range per state of the jobs that have a deadline (a partial index), not every queued job",
  },
  {
    sql: /^select \* from "jobs" where "id" >= \? and "id" < \? order by "id" limit \?$/,
    index: "sqlite_autoindex_jobs_1",
    why: "ListJobs' search by id prefix: one range of the primary key, at most a page, on any size of history",
  },
  {
    sql: /^select "jobs"\.\* from "job_labels" as "l" inner join "jobs"/,
    index: "job_labels_key_value_created",
    why: "ListJobs by label: the newest jobs of a label are one range, read in order; by jobs_created it would walk history",
  },
  {
    sql: /^select "provider", "priority", case when "not_before_ms" <= \? then 1 else 0 end as "due", count\(\*\) as "n" from "jobs" where "state" = 'queued'/,
    // Any index that holds every queued job by state reads the queued range only; which one SQLite picks does not matter.
    index: "(jobs_queue|jobs_state_created|jobs_state_created_id)",
    why: "every /metrics scrape on the leader counts the queue: the queued jobs, never the finished history",
  },
  {
    sql: /^select "provider", "state", count\(\*\) as "n" from "workers" where "state" in/,
    index: "workers_state",
    why: "every /metrics scrape on the leader counts the live workers by state, never the destroyed history",
  },
  {
    sql: /^select "id" from "webhook_deliveries" where "state" = \? and "next_attempt_at" <= \?/,
    index: "webhook_deliveries_due",
    why: "the leader's webhook step, every pass: the due pending deliveries are one range, oldest due first; delivered ones are history",
  },
];

/** Tables whose scans are fine: Kysely's and SQLite's own bookkeeping (a handful of rows, read by migrations). */
const IGNORED_TABLES = /^(kysely_|sqlite_)/;

const GROUPS = ["jobs", "workers", "tokens", "attempts", "logs", "retention", "meta", "keys", "secrets", "replicas", "webhooks", "schedules"] as const;

/** Distinct SQL text -> the parameters of its first execution. */
const statements = new Map<string, readonly unknown[]>();
const calledMethods = new Set<string>();
let patched = false;

function record(event: LogEvent): void {
  const text = event.query.sql;
  if (!statements.has(text)) statements.set(text, event.query.parameters);
}

/** Wraps every method of each query group's class once, to learn which ones the suite calls. */
function countCalls(store: Store): void {
  if (patched) return;
  patched = true;
  for (const group of GROUPS) {
    const proto = Object.getPrototypeOf(store[group]) as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const original = proto[name];
      if (name === "constructor" || typeof original !== "function") continue;
      proto[name] = function (this: unknown, ...args: unknown[]) {
        calledMethods.add(`${group}.${name}`);
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      };
    }
  }
}

function methodsOf(store: Store): string[] {
  return GROUPS.flatMap((group) =>
    Object.getOwnPropertyNames(Object.getPrototypeOf(store[group]))
      .filter((name) => name !== "constructor")
      .map((name) => `${group}.${name}`),
  );
}

describeStore("sqlite :memory:, every statement recorded for the query-plan audit", async () => {
  const { db, kind } = await openDatabase("sqlite::memory:", { log: record });
  const store = new Store(db, kind);
  countCalls(store);
  return store;
});

/** A database with history: finished jobs with destroyed workers, consumed tokens and logs, plus a few live ones. */
async function storeWithRows(): Promise<Store> {
  const { db, kind } = await openDatabase("sqlite::memory:");
  const store = new Store(db, kind);
  const clock = new ManualClock();
  const spec = validateJobSpec({ command: ["echo", "hi"], idempotencyKey: "" }, { provider: "local", timeoutSeconds: 60, providers: ["local", "docker"] });
  for (let i = 0; i < 300; i++) {
    clock.advance(1000);
    const now = clock.nowMs();
    await store.jobs.insert(`job-${i}`, { ...spec, provider: i % 2 ? "local" : "docker", idempotencyKey: i % 3 ? "" : `key-${i}` }, now);
    const claimed = await claimOne(store, i % 2 ? "local" : "docker", now, (job) => ({
      worker: { id: `worker-${i}`, name: workerName(`worker-${i}`), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: now + 60_000 },
      token: { id: `token-${i}`, tokenHash: hashToken(`otp-${i}`), expiresAtMs: now + 60_000 },
    }));
    assert.ok(claimed);
    if (i % 10 === 9) continue; // some stay provisioning
    await store.attempts.recordProvisioned(`worker-${i}`, `pid:${i}`, "process_id", now);
    await store.tokens.consume(hashToken(`otp-${i}`), now);
    const registered = await store.attempts.register(`worker-${i}`, hashToken(`session-${i}`), "host", now);
    await store.attempts.dispatch(registered!, now);
    await store.logs.append(`worker-${i}`, [{ seq: 1, stream: "stdout", data: Buffer.from("hi\n"), timeMs: now }], null);
    if (i % 10 === 8) continue; // some stay running
    await store.attempts.end(registered!, "succeeded", now, { exit_code: 0, finished_at: now }, "");
    await store.workers.transition(`worker-${i}`, "destroyed", { destroyed_at: now });
  }
  // Jobs with secrets, as submitted (queued): their rows live until the job ends.
  const box = new SecretBox(Buffer.alloc(32, 1));
  for (let i = 0; i < 40; i++) {
    const id = `secret-job-${i}`;
    await store.secrets.insertJob(id, { ...spec, secrets: { A: "value-a", B: "value-b" } }, clock.nowMs(), null, [box.seal(id, "A", "value-a"), box.seal(id, "B", "value-b")]);
  }
  await store.retention.removeFinished(clock.nowMs() - 250_000, clock.nowMs(), 20);
  await store.meta.set("cluster_id", "c0123456789ab");
  for (let i = 0; i < 30; i++) {
    clock.advance(1000);
    await store.keys.insert({ name: `key-${i}`, keyHash: hashToken(`key-${i}`), scopes: ["read"] }, clock.nowMs());
    if (i % 3 === 0) await store.keys.revoke(`key-${i}`, clock.nowMs());
  }
  return store;
}

interface PlanRow {
  detail: string;
}

/**
 * The full scans in a plan: `SCAN <name>` with no index, of anything but Kysely's tables and the
 * plan's own subquery results (`CO-ROUTINE part` then `SCAN part`: rows already bounded by a limit).
 */
function fullScans(plan: PlanRow[]): string[] {
  const subqueries = new Set(plan.map((row) => /^(?:CO-ROUTINE|MATERIALIZE) (\S+)/.exec(row.detail)?.[1]).filter(Boolean));
  return plan
    .map((row) => /^SCAN ([A-Za-z_]\w*)(.*)$/.exec(row.detail))
    .filter((m): m is RegExpExecArray => m !== null && !m[2].includes("USING") && !IGNORED_TABLES.test(m[1]) && m[1] !== "CONSTANT" && !subqueries.has(m[1]))
    .map((m) => m[0]);
}

async function explain(db: Kysely<Database>, text: string, parameters: readonly unknown[]): Promise<PlanRow[]> {
  const result = await db.executeQuery<PlanRow>(CompiledQuery.raw(`explain query plan ${text}`, [...parameters]));
  return result.rows;
}

describe("query plans", () => {
  let audited: Store | undefined;
  after(async () => {
    await audited?.close();
  });

  it("the contract suite calls every store method, so that every query is audited", async () => {
    audited = await storeWithRows();
    const missing = methodsOf(audited).filter((m) => !calledMethods.has(m));
    assert.deepEqual(missing, [], "store methods no contract test calls: add tests for them");
  });

  it("no statement of the store scans a table in full, except the commented allow-list", async () => {
    audited ??= await storeWithRows();
    const dml = [...statements].filter(([text]) => /^\s*(select|insert|update|delete|with)\b/i.test(text));
    assert.ok(dml.length > 40, `the suite's statements were recorded (${dml.length})`);
    const offenders: string[] = [];
    const allowUsed = new Set<number>();
    for (const [text, parameters] of dml) {
      if (/\b(kysely_migration|sqlite_master)\b/.test(text)) continue; // the migrator's bookkeeping
      const scans = fullScans(await explain(audited.db, text, parameters));
      if (scans.length === 0) continue;
      const allowed = ALLOWED_SCANS.findIndex((entry) => entry.sql.test(text));
      if (allowed >= 0) allowUsed.add(allowed);
      else offenders.push(`${scans.join(", ")}\n    in: ${text}`);
    }
    assert.deepEqual(offenders, [], `full table scans:\n${offenders.join("\n")}`);
    const stale = ALLOWED_SCANS.filter((_, i) => !allowUsed.has(i)).map((e) => e.sql.source);
    assert.deepEqual(stale, [], "allow-list entries that no statement needs any more: remove them");
  });

  it("the statements SQLite could plan on the wrong index use the one they need", async () => {
    audited ??= await storeWithRows();
    const wrong: string[] = [];
    for (const expected of EXPECTED_INDEXES) {
      const matching = [...statements].filter(([text]) => expected.sql.test(text));
      if (matching.length === 0) wrong.push(`no statement matches ${expected.sql.source}: update the list`);
      for (const [text, parameters] of matching) {
        const plan = await explain(audited.db, text, parameters);
        const uses = plan.some((row) => new RegExp(`USING (COVERING )?INDEX ${expected.index}\\b`).test(row.detail));
        if (!uses) wrong.push(`${expected.index} not used (${expected.why}):\n    ${plan.map((r) => r.detail).join("; ")}\n    in: ${text}`);
      }
    }
    assert.deepEqual(wrong, []);
  });
});
