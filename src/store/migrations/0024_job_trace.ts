/**
 * A job's trace (core/trace-context.ts): `trace_id`, set when the control plane records the job's
 * spans, and `trace_parent`, the caller's W3C traceparent. "" for none, and for every job from
 * before traces.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("trace_id", "text", (c) => c.notNull().defaultTo("")).execute();
  await db.schema.alterTable("jobs").addColumn("trace_parent", "text", (c) => c.notNull().defaultTo("")).execute();
}
