/**
 * The names of a job's secrets for jobs submitted before 0018, which gave every existing job "[]":
 * a job that still holds job_secrets rows gets their names. From here on secret_names lists every
 * job's secrets, so the end of a job without any skips their delete (AttemptQueries.finishJob).
 * job_secrets holds rows only of jobs that may still run (a job's end deletes them): it is read
 * whole, and each of its jobs updated by id, only when its names are still "[]".
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  const rows = (await db.selectFrom("job_secrets").select(["job_id as jobId", "name"]).execute()) as { jobId: string; name: string }[];
  const names = new Map<string, string[]>();
  for (const { jobId, name } of rows) names.set(jobId, [...(names.get(jobId) ?? []), name]);
  for (const [jobId, list] of names) {
    await db.updateTable("jobs").set({ secret_names: JSON.stringify(list.sort()) }).where("id", "=", jobId).where("secret_names", "=", "[]").execute();
  }
}
