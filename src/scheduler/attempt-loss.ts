/**
 * The one path for an attempt lost to the infrastructure (the worker failed to start, never
 * registered, went silent, vanished): retry with a new worker while the job's policy allows
 * (core/backoff.ts decides), else fail the job with the reason in words. Also the worker's own
 * words for such reasons: its last output, and a line of ours in the job's log.
 */
import { decideAfterLoss, type LossKind } from "../core/backoff.js";
import type { WorkerRow } from "../store/schema.js";
import { PROVIDER_CALL_MS, type ReconcileContext } from "./context.js";

export type { LossKind } from "../core/backoff.js";

/** An attempt lost to the infrastructure or its provider: retry it with a new worker, or fail the job. */
export async function loseAttempt(ctx: ReconcileContext, worker: WorkerRow, reason: string, cause: string, kind: LossKind = "infrastructure"): Promise<void> {
  const job = await ctx.store.jobs.get(worker.job_id);
  if (!job || job.attempts !== worker.attempt) return;
  const now = ctx.clock.nowMs();
  const decision = decideAfterLoss({ attempts: job.attempts, uncountedAttempts: job.uncounted_attempts, maxAttempts: job.max_attempts, kind, nowMs: now });
  ctx.metrics.attemptsLost.inc({ provider: worker.provider, cause });
  const logsIncomplete = worker.state === "running" ? 1 : job.logs_incomplete;
  if (decision.retry) {
    const note = decision.isUncounted ? "; retrying (not counted against maxAttempts: the loss is the provider's, not the job's)" : "; retrying";
    const ended = await ctx.store.attempts.end(worker, "queued", now, { not_before_ms: decision.notBeforeMs, reason: `attempt ${worker.attempt} lost: ${reason}${note}` }, reason, decision.isUncounted);
    if (ended) ctx.log.warn({ jobId: job.id, workerId: worker.id, reason, isUncounted: decision.isUncounted }, "attempt lost; job requeued");
  } else {
    const ended = await ctx.store.attempts.end(worker, "failed", now, { reason, finished_at: now, logs_incomplete: logsIncomplete }, reason);
    if (ended) {
      ctx.metrics.jobsFinished.inc({ provider: job.provider, state: "failed" });
      ctx.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job failed");
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
  const text = await ctx.calls.run(worker.provider, "last output", PROVIDER_CALL_MS, (signal) => provider.lastOutput!(resourceId, signal)).catch(() => "");
  return text.length > 600 ? `...${text.slice(-600)}` : text;
}
