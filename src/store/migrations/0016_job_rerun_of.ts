/**
 * A rerun (RerunJob) names the job it copies; null for a job submitted directly and for every job
 * submitted before reruns existed.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("rerun_of", "text").execute();
}
