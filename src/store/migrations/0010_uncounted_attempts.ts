/**
 * Attempts lost through no fault of the job (its provider was unavailable or took the worker away)
 * are counted apart, so `attempts` stays the honest number of attempts made and `max_attempts` the
 * user's own limit.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("uncounted_attempts", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
