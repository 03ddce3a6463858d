/**
 * The queue's order and deadlines, and the spec fingerprint of idempotent submits:
 *  - priority: the claim takes the highest priority first, then the oldest; index jobs_queue
 *    (state, priority desc, created_at, id) lets it read the queue in that order without a sort
 *    (jobs_state_created_id stays for ListJobs by state, newest first);
 *  - queue_timeout_seconds, run_at_ms, queue_deadline_ms: a job that has not started by its
 *    deadline ends timed_out (scheduler/queue-deadlines.ts); index jobs_queue_deadline (state,
 *    queue_deadline_ms, id) makes the jobs past their deadline one range per state, whatever the history;
 *  - spec_hash: a reused idempotency key with another spec is refused (core/spec-hash.ts).
 * Jobs from before keep run_at_ms and spec_hash null (see schema.ts) rather than being rewritten.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema.alterTable("jobs").addColumn("priority", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("jobs").addColumn("queue_timeout_seconds", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("jobs").addColumn("run_at_ms", bigint).execute();
  await db.schema.alterTable("jobs").addColumn("queue_deadline_ms", bigint).execute();
  await db.schema.alterTable("jobs").addColumn("spec_hash", "text").execute();
  await db.schema.createIndex("jobs_queue").on("jobs").columns(["state", "priority desc", "created_at", "id"]).execute();
  await db.schema.createIndex("jobs_queue_deadline").on("jobs").columns(["state", "queue_deadline_ms", "id"]).execute();
}
