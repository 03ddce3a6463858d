/**
 * Indexes for every query the store runs (test/query-plans: no statement scans a table in full).
 *  - otp_tokens_worker (worker_id): provisioning records the provider_resource_id on the token and
 *    the end of every attempt revokes it, both `where worker_id = ?` inside the write transaction;
 *    also the foreign-key check when a worker row is deleted (retention).
 *  - otp_tokens_job (job_id): retention deletes a job's tokens; the foreign-key check on deleting a job.
 *  - otp_tokens_created_id (created_at, id) replaces otp_tokens_created: `hodei tokens` lists
 *    newest first with id as the tie-break, read in index order without a sort.
 *  - jobs_state_created_id (state, created_at, id) replaces jobs_state_created: the claim (oldest
 *    due queued job) and ListJobs by state read in index order with the id tie-break, no sort.
 *  - jobs_finished (finished_at): retention finds the jobs that finished before its cutoff.
 *  - workers_created_id (created_at, id): `hodei workers --all`, newest first.
 * Not added: jobs (provider, created_at, id) for ListJobs by provider. With it SQLite planned the
 * claim of a single provider on that index, walking every job the provider ever had, oldest first,
 * to find the first queued one (17 ms per claim at 20,000 finished jobs instead of 0.35 ms).
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("otp_tokens_worker").on("otp_tokens").columns(["worker_id"]).execute();
  await db.schema.createIndex("otp_tokens_job").on("otp_tokens").columns(["job_id"]).execute();
  await db.schema.createIndex("otp_tokens_created_id").on("otp_tokens").columns(["created_at", "id"]).execute();
  await db.schema.dropIndex("otp_tokens_created").execute();
  await db.schema.createIndex("jobs_state_created_id").on("jobs").columns(["state", "created_at", "id"]).execute();
  await db.schema.dropIndex("jobs_state_created").execute();
  await db.schema.createIndex("jobs_finished").on("jobs").columns(["finished_at"]).execute();
  await db.schema.createIndex("workers_created_id").on("workers").columns(["created_at", "id"]).execute();
}
