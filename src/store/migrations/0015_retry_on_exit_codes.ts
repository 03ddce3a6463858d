/**
 * Exit codes as retryable failures: each job keeps the exit codes it retries ("" none, "any", or
 * "3,4"), and each worker the exit code its attempt ended with, so that every attempt of a
 * retried job shows how it ended (the job's own exit_code is only its final answer).
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("retry_on_exit_codes", "text", (c) => c.notNull().defaultTo("")).execute();
  await db.schema.alterTable("workers").addColumn("exit_code", "integer").execute();
}
