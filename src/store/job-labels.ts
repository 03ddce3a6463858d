/**
 * The job_labels rows (migration 0014): one per label of a job, written in the job's insert
 * transaction and deleted by retention with the job (before it: the foreign key). They exist only so
 * that ListJobs by label reads an index; jobs.labels stays the job's own copy. Used by JobQueries and
 * RetentionQueries, inside their statements and transactions.
 */
import type { Kysely } from "kysely";
import type { JobState } from "../core/job-state.js";
import type { Database } from "./schema.js";

/** A label selector term: key = value. */
export type LabelTerm = [key: string, value: string];

export async function insertJobLabels(db: Kysely<Database>, jobId: string, labels: Record<string, string>, createdAt: number): Promise<void> {
  const rows = Object.entries(labels).map(([key, value]) => ({ job_id: jobId, key, value, created_at: createdAt }));
  if (rows.length > 0) await db.insertInto("job_labels").values(rows).execute();
}

export async function deleteJobLabels(db: Kysely<Database>, jobIds: string[]): Promise<void> {
  await db.deleteFrom("job_labels").where("job_id", "in", jobIds).execute();
}

/**
 * The newest jobs carrying every label of `terms` (and in `state`, of `provider`, before a position
 * when given): driven by the first term's range of job_labels_key_value_created in (created_at,
 * job_id) order, each row joined to its job by id and checked for the other terms by primary key.
 * The cost is the first term's jobs walked until `limit` match, never the whole history.
 */
export function selectLabelledJobs(
  db: Kysely<Database>,
  terms: LabelTerm[],
  filter: { state?: JobState; provider?: string; before?: { createdAt: number; id: string }; limit: number },
) {
  const [[key, value], ...rest] = terms;
  let q = db.selectFrom("job_labels as l").innerJoin("jobs", "jobs.id", "l.job_id").selectAll("jobs").where("l.key", "=", key).where("l.value", "=", value);
  for (const [k, v] of rest) {
    q = q.where(({ exists, selectFrom }) =>
      exists(selectFrom("job_labels as m").select("m.job_id").whereRef("m.job_id", "=", "l.job_id").where("m.key", "=", k).where("m.value", "=", v)),
    );
  }
  if (filter.state) q = q.where("jobs.state", "=", filter.state);
  if (filter.provider) q = q.where("jobs.provider", "=", filter.provider);
  if (filter.before) {
    const { createdAt, id } = filter.before;
    q = q.where((eb) => eb(eb.refTuple("l.created_at", "l.job_id"), "<", eb.tuple(createdAt, id)));
  }
  return q.orderBy("l.created_at", "desc").orderBy("l.job_id", "desc").limit(filter.limit);
}
