/** CPU and memory limits per job. */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("cpu_millis", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("jobs").addColumn("memory_mb", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
