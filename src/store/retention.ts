/**
 * Removal of finished jobs (retention): a job that ended (succeeded, failed, canceled, timed_out)
 * before a cutoff goes with its destroyed workers, its OTP tokens, its label rows, its webhook deliveries, its log and any
 * secrets left (normally none: they go when the job ends); its idempotency key is free again,
 * and it leaves a small record in removed_jobs (id, finished_at, removed_at) so that asking for it can say "removed".
 * Those records expire in turn (expireRemoved). The caller (scheduler/retention.ts) picks the
 * cutoffs and bounds each call; the store reads no clock.
 *
 * Invariants:
 *  - a job with any worker that is not destroyed is never removed (nor is that worker): its
 *    resource may still exist and the worker row is how it is found and destroyed;
 *  - a job's rows go together, in one transaction, or not at all;
 *  - every condition that selects a job (terminal state, finished_at, all workers destroyed) can
 *    only become true, never false again, so reading the batch and then deleting it in the same
 *    transaction is safe with several control planes too (PostgreSQL skips rows another one holds).
 */
import type { Kysely } from "kysely";
import { JOB_STATES, TERMINAL_JOB_STATES } from "../core/job-state.js";
import { LIVE_WORKER_STATES } from "../core/worker-state.js";
import type { DatabaseKind } from "./database.js";
import { deleteJobLabels } from "./job-labels.js";
import type { Database, RemovedJobRow } from "./schema.js";
import { deleteSecretsOfJobs } from "./secrets.js";

const UNFINISHED_JOB_STATES = JOB_STATES.filter((state) => !TERMINAL_JOB_STATES.includes(state));

export class RetentionQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
  ) {}

  /**
   * Removes up to `limit` jobs that finished before `finishedBeforeMs`, oldest first, with their
   * rows; records each in removed_jobs at `nowMs`. Returns how many jobs were removed.
   */
  async removeFinished(finishedBeforeMs: number, nowMs: number, limit: number): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      // The state test is written as "not one of the unfinished states" on purpose: SQLite then
      // walks jobs_finished (a range, oldest first) instead of every finished job by state and a sort.
      const doomed = await tx
        .selectFrom("jobs")
        .select(["id", "finished_at"])
        .where("finished_at", "<", finishedBeforeMs)
        .where("state", "not in", UNFINISHED_JOB_STATES)
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom("workers").select("workers.id").whereRef("workers.job_id", "=", "jobs.id").where("workers.state", "!=", "destroyed"))),
        )
        .orderBy("finished_at")
        .limit(limit)
        .$if(this.kind === "postgres", (qb) => qb.forUpdate().skipLocked())
        .execute();
      if (doomed.length === 0) return 0;
      const ids = doomed.map((job) => job.id);
      // Children first: they reference the job (and tokens the worker) by foreign key.
      await tx.deleteFrom("job_logs").where("job_id", "in", ids).execute();
      await tx.deleteFrom("otp_tokens").where("job_id", "in", ids).execute();
      // Leftovers only: a job's secrets are deleted when it ends (store/attempts.ts).
      await deleteSecretsOfJobs(tx, ids);
      await deleteJobLabels(tx, ids);
      await tx.deleteFrom("webhook_deliveries").where("job_id", "in", ids).execute();
      // "Not live" is "destroyed", written so that SQLite looks workers up by job (workers_job)
      // rather than walking every destroyed worker (workers_state).
      await tx.deleteFrom("workers").where("job_id", "in", ids).where("state", "not in", LIVE_WORKER_STATES).execute();
      await tx
        .insertInto("removed_jobs")
        .values(doomed.map((job) => ({ id: job.id, finished_at: job.finished_at!, removed_at: nowMs })))
        .onConflict((oc) => oc.column("id").doNothing())
        .execute();
      // The guard repeats the selection's state condition; a worker left behind would make the
      // foreign key refuse the delete and roll the whole batch back.
      const result = await tx.deleteFrom("jobs").where("id", "in", ids).where("state", "in", TERMINAL_JOB_STATES).executeTakeFirst();
      return Number(result.numDeletedRows);
    });
  }

  /** Forgets up to `limit` records of jobs removed before `removedBeforeMs`, oldest first. */
  async expireRemoved(removedBeforeMs: number, limit: number): Promise<number> {
    const result = await this.db
      .deleteFrom("removed_jobs")
      .where("id", "in", (eb) => eb.selectFrom("removed_jobs").select("id").where("removed_at", "<", removedBeforeMs).orderBy("removed_at").limit(limit))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** The record of a job removed by retention, while it is kept. */
  async getRemoved(id: string): Promise<RemovedJobRow | undefined> {
    return this.db.selectFrom("removed_jobs").selectAll().where("id", "=", id).executeTakeFirst();
  }
}
