/**
 * The names of a job's secrets (a JSON array of strings), kept with the job for as long as it is:
 * the API shows them after the encrypted values are gone (job_secrets rows die with the job's end).
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("secret_names", "text", (c) => c.notNull().defaultTo("[]")).execute();
}
