/**
 * Labels as rows (job_labels), so that ListJobs by label reads an index instead of every job's
 * JSON: index job_labels_key_value_created (key, value, created_at, job_id) makes a label's newest
 * jobs one range, read in ListJobs' order (created_at desc, id desc) without a sort; the primary
 * key (job_id, key) serves the other terms of a selector and retention's delete. jobs.labels stays
 * the job's own copy (what GetJob returns). Existing jobs' labels are copied a page of jobs at a
 * time, by id, so that the copy reads through the primary key like every other statement.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

const PAGE = 500;
/** Label rows per insert: 4 parameters each, well under SQLite's limit on one statement's parameters. */
const ROWS_PER_INSERT = 200;

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema
    .createTable("job_labels")
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("key", "text", (c) => c.notNull())
    .addColumn("value", "text", (c) => c.notNull())
    .addColumn("created_at", bigint, (c) => c.notNull())
    .addPrimaryKeyConstraint("job_labels_pk", ["job_id", "key"])
    .execute();
  await db.schema.createIndex("job_labels_key_value_created").on("job_labels").columns(["key", "value", "created_at", "job_id"]).execute();

  let afterId = "";
  for (;;) {
    const jobs: { id: string; labels: string; created_at: number }[] = await db
      .selectFrom("jobs")
      .select(["id", "labels", "created_at"])
      .where("id", ">", afterId)
      .orderBy("id")
      .limit(PAGE)
      .execute();
    const rows = jobs.flatMap((job) =>
      Object.entries(JSON.parse(job.labels) as Record<string, string>).map(([key, value]) => ({ job_id: job.id, key, value, created_at: job.created_at })),
    );
    for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) await db.insertInto("job_labels").values(rows.slice(i, i + ROWS_PER_INSERT)).execute();
    if (jobs.length < PAGE) return;
    afterId = jobs[jobs.length - 1].id;
  }
}
