/**
 * Per attempt (worker): how its provider applied the job's resource limits, in words
 * (resources_applied; "" when none were asked for), and what its provider says it waits for before
 * it can run (pending_reason, e.g. the Kubernetes scheduler's message for an unschedulable pod) and
 * since when (pending_since_ms; null while it waits for nothing outside itself). A waiting worker is
 * judged by the provider's pending timeout instead of its registration deadline.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  await db.schema.alterTable("workers").addColumn("resources_applied", "text", (c) => c.notNull().defaultTo("")).execute();
  await db.schema.alterTable("workers").addColumn("pending_reason", "text", (c) => c.notNull().defaultTo("")).execute();
  await db.schema.alterTable("workers").addColumn("pending_since_ms", kind === "postgres" ? "bigint" : "integer").execute();
}
