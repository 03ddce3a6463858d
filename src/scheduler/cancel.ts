/**
 * Ending a job before its command ends: the one place that does it, for a cancel and for a job that
 * never started within its queue timeout alike. In one transaction the job ends (canceled or
 * timed_out), its workers without an agent yet go to destroying and its unused OTP tokens are
 * revoked; agents connected to this process are told at once over their stream (agents connected
 * to another replica hear it from that replica's session check within 250 ms, worker-service.ts). A connected
 * agent then kills the job's process tree, flushes and reports; past its stop deadline its worker is
 * destroyed anyway.
 */
import type { JobRow, WorkerRow } from "../store/schema.js";
import { type ReconcileContext, stopDeadlineMs } from "./context.js";
import { observeJobFinished } from "./metrics.js";

/** Cancels the job unless it already ended; null when it had (the caller says why). */
export async function cancelJob(ctx: ReconcileContext, jobId: string, reason: string): Promise<JobRow | null> {
  const now = ctx.clock.nowMs();
  const canceled = await ctx.store.attempts.cancel(jobId, reason, now, stopDeadlineMs(ctx, now));
  if (!canceled) return null;
  released(ctx, canceled, reason);
  ctx.log.info({ jobId, reason }, "job canceled");
  return canceled.job;
}

/**
 * Ends a job that never started (no attempt dispatched) as timed_out: its queue timeout has passed.
 * Null when it started or ended meanwhile (the store's guard: queued or provisioning, its queue
 * deadline still set and passed).
 */
export async function timeOutInQueue(ctx: ReconcileContext, jobId: string, reason: string): Promise<JobRow | null> {
  const now = ctx.clock.nowMs();
  const timedOut = await ctx.store.attempts.timeOutInQueue(jobId, reason, now, stopDeadlineMs(ctx, now));
  if (!timedOut) return null;
  released(ctx, timedOut, reason);
  ctx.log.info({ jobId, reason }, "job timed out in the queue");
  return timedOut.job;
}

/** After the job's end is written: connected agents are told, the end is counted, a pass destroys the rest. */
function released(ctx: ReconcileContext, ended: { job: JobRow; workers: WorkerRow[] }, reason: string): void {
  for (const worker of ended.workers) {
    if (worker.state === "registered" || worker.state === "running") ctx.agents.cancel(worker.id, reason, ctx.stopGraceMs);
  }
  // The job's run: from its current attempt's dispatch, if it was dispatched.
  const current = ended.workers.find((w) => w.attempt === ended.job.attempts);
  observeJobFinished(ctx.metrics, ended.job.provider, ended.job.state, current?.started_at ?? null, ctx.clock.nowMs());
  ctx.trace.jobEnded(ended.job);
  ctx.nudge();
  // Every replica (store/notifier.ts): agents connected elsewhere are told now, not at their next
  // heartbeat; other passes run now. Hints, sent without waiting.
  ctx.store.hint("cancel", ended.job.id);
  ctx.store.hint("reconcile");
}
