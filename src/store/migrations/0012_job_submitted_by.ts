/**
 * Who submitted each job: the name of its API key (null for jobs submitted before keys existed, or
 * with HODEI_AUTH=off). A submit-only key may cancel and read only the jobs that name it.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("submitted_by", "text").execute();
}
