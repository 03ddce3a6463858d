/**
 * A small record per job removed by retention (id, when it finished, when it was removed), so that
 * asking for a removed job answers "removed" instead of "not found"; these expire in turn.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema
    .createTable("removed_jobs")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("finished_at", bigint, (c) => c.notNull())
    .addColumn("removed_at", bigint, (c) => c.notNull())
    .execute();
  // Expiry walks the oldest removals first.
  await db.schema.createIndex("removed_jobs_removed").on("removed_jobs").columns(["removed_at", "id"]).execute();
}
