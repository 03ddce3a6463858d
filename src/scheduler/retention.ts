/**
 * Step 6 of a full pass: retention. Jobs that finished more than `retentionMs` ago are removed
 * with their destroyed workers, OTP tokens and logs (store/retention.ts keeps the invariants: never
 * a live job, never a worker that is not destroyed). Each removed job leaves a small record so that
 * asking for it answers "removed"; those records are forgotten REMOVED_RECORD_FACTOR times the
 * retention after the removal (28 days at the default 7 days), so they do not grow forever either:
 * a record is a few dozen bytes where the job it replaces had a job, worker, token and log rows.
 *
 * Work is bounded so that a pass stays short whatever the backlog (say, the first pass after
 * retention is turned on over years of history): at most `maxBatches` transactions of `batchJobs`
 * jobs each per pass; the next full pass continues. retentionMs 0 keeps everything.
 */
import type { ReconcileContext } from "./context.js";

export interface RetentionLimits {
  /** Jobs removed per transaction. */
  batchJobs: number;
  /** Transactions per pass, for jobs and again for the records of removed jobs. */
  maxBatches: number;
}

export const RETENTION_LIMITS: RetentionLimits = { batchJobs: 200, maxBatches: 5 };
/** Records of removed jobs are kept this many times the retention after the removal. */
export const REMOVED_RECORD_FACTOR = 4;

export async function removeExpiredJobs(
  ctx: Pick<ReconcileContext, "store" | "clock" | "log" | "retentionMs">,
  limits: RetentionLimits = RETENTION_LIMITS,
): Promise<{ removed: number; forgotten: number }> {
  const retentionMs = ctx.retentionMs ?? 0;
  if (retentionMs <= 0) return { removed: 0, forgotten: 0 };
  const now = ctx.clock.nowMs();
  const removed = await inBatches(limits, (limit) => ctx.store.retention.removeFinished(now - retentionMs, now, limit));
  const forgotten = await inBatches(limits, (limit) => ctx.store.retention.expireRemoved(now - REMOVED_RECORD_FACTOR * retentionMs, limit));
  if (removed > 0 || forgotten > 0) ctx.log.info({ removed, forgotten, retentionMs }, "finished jobs removed by retention");
  return { removed, forgotten };
}

/** Runs `batch` until it does less than a full batch or maxBatches ran; the total done. */
async function inBatches(limits: RetentionLimits, batch: (limit: number) => Promise<number>): Promise<number> {
  let total = 0;
  for (let i = 0; i < limits.maxBatches; i++) {
    const done = await batch(limits.batchJobs);
    total += done;
    if (done < limits.batchJobs) break;
  }
  return total;
}
