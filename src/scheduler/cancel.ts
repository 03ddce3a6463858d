/**
 * Canceling a job: the one place that does it. In one transaction the job becomes canceled, its
 * workers without an agent yet go to destroying and its unused OTP tokens are revoked; agents
 * connected to this process are told at once over their stream (agents connected elsewhere hear it
 * at their next heartbeat, and the deadlines step tells them too). A connected agent then kills the
 * job's process tree, flushes and reports; past its stop deadline its worker is destroyed anyway.
 */
import type { JobRow } from "../store/schema.js";
import { type ReconcileContext, stopDeadlineMs } from "./context.js";

/** Cancels the job unless it already ended; null when it had (the caller says why). */
export async function cancelJob(ctx: ReconcileContext, jobId: string, reason: string): Promise<JobRow | null> {
  const now = ctx.clock.nowMs();
  const canceled = await ctx.store.attempts.cancel(jobId, reason, now, stopDeadlineMs(ctx, now));
  if (!canceled) return null;
  for (const worker of canceled.workers) {
    if (worker.state === "registered" || worker.state === "running") ctx.agents.cancel(worker.id, reason, ctx.stopGraceMs);
  }
  ctx.metrics.jobsFinished.inc({ provider: canceled.job.provider, state: "canceled" });
  ctx.log.info({ jobId, reason }, "job canceled");
  ctx.nudge();
  return canceled.job;
}
