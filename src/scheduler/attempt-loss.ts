/**
 * The one path for an attempt lost to the infrastructure (the worker failed to start, never
 * registered, went silent, vanished): retry with a new worker while the job's policy allows
 * (core/backoff.ts decides), else fail the job with the reason in words. Also the worker's own
 * words for such reasons: its last output, and a line of ours in the job's log.
 */
import { nextAfterLoss } from "../core/backoff.js";
import { withTimeout } from "../core/errors.js";
import type { WorkerRow } from "../store/schema.js";
import { PROVIDER_CALL_MS, type ReconcileContext } from "./context.js";

/**
 * Who lost an attempt, which decides whether it counts against the job's maxAttempts:
 * - `infrastructure`: the worker failed (start error, silent, vanished); counted, retried if allowed;
 * - `permanent`: retrying cannot help (missing image, invalid pod); the job fails at once;
 * - `provider`: the provider itself took the worker away (its daemon stopped, the worker was
 *   stopped or evicted from outside); the job's own command did not fail, so it is not counted.
 */
export type LossKind = "infrastructure" | "permanent" | "provider";

/** An attempt lost to the infrastructure: retry it with a new worker, or fail the job. */
export async function loseAttempt(ctx: ReconcileContext, worker: WorkerRow, reason: string, cause: string, kind: LossKind = "infrastructure"): Promise<void> {
  const permanent = kind === "permanent";
  const job = await ctx.store.jobs.get(worker.job_id);
  if (!job) return;
  const now = ctx.clock.nowMs();
  const decision = nextAfterLoss(worker.attempt, job.max_attempts, permanent, now);
  ctx.metrics.attemptsLost.inc({ provider: worker.provider, cause });
  const logsIncomplete = worker.state === "running" ? 1 : job.logs_incomplete;
  if (decision.retry) {
    await ctx.store.attempts.end(worker, "queued", now, { not_before_ms: decision.notBeforeMs, reason: `attempt ${worker.attempt} lost: ${reason}; retrying` }, reason);
    ctx.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job requeued");
  } else {
    const ended = await ctx.store.attempts.end(worker, "failed", now, { reason, finished_at: now, logs_incomplete: logsIncomplete }, reason);
    if (ended) ctx.metrics.jobsFinished.inc({ provider: job.provider, state: "failed" });
    ctx.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job failed");
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
  if (!provider?.lastOutput || !worker.provider_resource_id) return "";
  const text = await withTimeout(provider.lastOutput(worker.provider_resource_id), PROVIDER_CALL_MS, "last output").catch(() => "");
  return text.length > 600 ? `...${text.slice(-600)}` : text;
}
