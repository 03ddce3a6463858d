/**
 * The one path for an attempt that failed in a way the retry policy may retry: lost to the
 * infrastructure (the worker failed to start, never registered, went silent, vanished) or to its
 * provider, or ended by the command with an exit code the job retries. Retry with a new worker
 * while the job's policy allows (core/backoff.ts decides), else fail the job with the reason in
 * words. Also the worker's own words for such reasons: its last output, and a line of ours in the
 * job's log.
 */
import { decideAfterLoss, type LossKind } from "../core/backoff.js";
import { isTerminal } from "../core/job-state.js";
import type { WorkerRow } from "../store/schema.js";
import { PROVIDER_CALL_MS, type ReconcileContext } from "./context.js";
import { observeJobFinished } from "./metrics.js";

export type { LossKind } from "../core/backoff.js";

/** What the agent reported with a result whose exit code the job retries (kind `exit_code`). */
export interface CommandEnding {
  exitCode: number;
  /** The attempt's log was cut at the limit (by the agent or the control plane). */
  isLogTruncated: boolean;
  /** Log chunks the result claims never arrived. */
  isLogIncomplete: boolean;
}

/**
 * An attempt that failed: retry it with a new worker, or fail the job. `ending` is given for a
 * command that exited (kind `exit_code`): its exit code is kept on the worker, and on the job if
 * the job fails with it.
 */
export async function loseAttempt(
  ctx: ReconcileContext,
  worker: WorkerRow,
  reason: string,
  cause: string,
  kind: LossKind = "infrastructure",
  ending?: CommandEnding,
): Promise<void> {
  const job = await ctx.store.jobs.get(worker.job_id);
  if (!job || job.attempts !== worker.attempt) return;
  const now = ctx.clock.nowMs();
  const random = ctx.random ?? Math.random;
  const decision = decideAfterLoss({ attempts: job.attempts, uncountedAttempts: job.uncounted_attempts, maxAttempts: job.max_attempts, kind, nowMs: now, random });
  ctx.metrics.attemptsLost.inc({ provider: worker.provider, cause });
  const exitCode = ending?.exitCode ?? null;
  const logsIncomplete = ending ? (ending.isLogIncomplete ? 1 : 0) : worker.state === "running" ? 1 : job.logs_incomplete;
  if (decision.retry && ending && !isTerminal(job.state)) {
    // Said in the attempt's own log, so that whoever follows the output sees why it starts again.
    await appendSystemLog(ctx, worker, `[hodei] ${reason}, an exit code this job retries: it runs again on a new worker (attempt ${job.attempts + 1})\n`);
  }
  if (decision.retry) {
    const note = decision.isUncounted ? "; retrying (not counted against maxAttempts: the loss is the provider's, not the job's)" : "; retrying";
    const what = ending ? "failed" : "lost";
    const patch = { not_before_ms: decision.notBeforeMs, reason: `attempt ${worker.attempt} ${what}: ${reason}${note}` };
    const ended = await ctx.store.attempts.end(worker, "queued", now, patch, reason, decision.isUncounted, exitCode);
    const message = ending ? "attempt failed with an exit code the job retries; job requeued" : "attempt lost; job requeued";
    if (ended) ctx.log.warn({ jobId: job.id, workerId: worker.id, reason, isUncounted: decision.isUncounted, notBeforeMs: decision.notBeforeMs }, message);
  } else {
    const patch = { reason, finished_at: now, logs_incomplete: logsIncomplete, ...(ending ? { exit_code: exitCode, logs_truncated: ending.isLogTruncated ? 1 : 0 } : {}) };
    // A command's exit is the job's answer, as for any failed command: the reason is the job's, not the worker's.
    const ended = await ctx.store.attempts.end(worker, "failed", now, patch, ending ? "" : reason, false, exitCode);
    if (ended) {
      observeJobFinished(ctx.metrics, job.provider, "failed", worker.started_at, now);
      ctx.trace.jobEnded(ended);
      if (ending) ctx.log.info({ jobId: job.id, workerId: worker.id, state: "failed", exitCode, attempts: job.attempts }, "job finished");
      else ctx.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job failed");
    }
  }
  ctx.nudge();
}

/**
 * Adds a line of our own to the attempt's log, after whatever the agent sent: numbered through the
 * same guarded path as the agent's chunks, so the attempt's seqs stay 1, 2, 3, ... without gaps.
 */
export async function appendSystemLog(ctx: ReconcileContext, worker: WorkerRow, text: string): Promise<void> {
  await ctx.store.logs.appendSystemLine(worker.id, text, ctx.clock.nowMs());
}

/** The worker's last output, when its provider can tell (a capability), for failure reasons. */
export async function lastOutputOf(ctx: ReconcileContext, worker: WorkerRow): Promise<string> {
  const provider = ctx.providers.get(worker.provider)?.provider;
  const resourceId = worker.provider_resource_id;
  if (!provider?.lastOutput || !resourceId) return "";
  const text = await ctx.calls.run(worker.provider, "last output", PROVIDER_CALL_MS, (signal) => provider.lastOutput!(resourceId, signal), worker).catch(() => "");
  return text.length > 600 ? `...${text.slice(-600)}` : text;
}
