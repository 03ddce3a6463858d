/**
 * Step of a pass: a job that has not started (no attempt dispatched to a worker) within its queue
 * timeout, counted from when it became due (its run-at), ends timed_out with a reason that says it
 * never started and why: its provider was unavailable (the health detail), at capacity (N of N
 * workers busy), or its worker was still starting (with the job's last note, e.g. the scheduler's
 * message about an unschedulable pod). A job that was provisioning is ended through the cancel path
 * (cancel.ts), so its worker is destroyed and its OTP token revoked.
 *
 * Candidates are the jobs whose deadline has passed in wall time (one index range per state); each
 * is judged by present time (liveness.ts): a control plane that was stopped or frozen does not time
 * jobs out for its own absence, since those jobs could not have been started meanwhile either.
 */
import type { JobRow } from "../store/schema.js";
import { timeOutInQueue } from "./cancel.js";
import { PAGE_SIZE, type ReconcileContext } from "./context.js";

export async function expireQueueDeadlines(ctx: ReconcileContext): Promise<void> {
  let live: Map<string, number> | undefined;
  for (const state of ["queued", "provisioning"] as const) {
    let after: { deadlineMs: number; id: string } | null = null;
    for (;;) {
      const page = await ctx.store.jobs.listPastQueueDeadline(state, ctx.clock.nowMs(), after, PAGE_SIZE);
      for (const job of page) {
        const timeoutMs = job.queue_timeout_seconds * 1000;
        if (!ctx.liveness.isOverdue(job.queue_deadline_ms! - timeoutMs, timeoutMs)) continue;
        live ??= await ctx.store.workers.countLiveByProvider();
        const reason = `never started within its queue timeout of ${job.queue_timeout_seconds}s: ${await whyNotStarted(ctx, job, live)}`;
        const ended = await timeOutInQueue(ctx, job.id, reason);
        if (ended) ctx.log.warn({ jobId: job.id, provider: job.provider, reason }, "job never started within its queue timeout");
      }
      if (page.length < PAGE_SIZE) break;
      const last = page[page.length - 1];
      after = { deadlineMs: last.queue_deadline_ms!, id: last.id };
    }
  }
}

/** Why the job is still waiting, in words a user can act on. */
async function whyNotStarted(ctx: ReconcileContext, job: JobRow, live: Map<string, number>): Promise<string> {
  const detail = ctx.health.detailOf(job.provider);
  if (ctx.health.isMarkedUnavailable(job.provider)) return `${job.provider} was unavailable (${detail || "its health check failed"})`;
  const causes: string[] = [];
  const slot = ctx.providers.get(job.provider);
  if (!slot) {
    // Submitted while the provider was enabled; this server runs without it (HODEI_PROVIDERS).
    causes.push(`${job.provider} is not enabled on this server`);
  } else if (job.state === "queued") {
    const busy = live.get(job.provider) ?? 0;
    causes.push(busy >= slot.maxWorkers ? `${job.provider} was at capacity (${busy} of ${slot.maxWorkers} workers busy)` : "it was waiting for its turn in the queue");
  } else {
    const worker = (await ctx.store.workers.listOfJob(job.id)).find((w) => w.attempt === job.attempts);
    causes.push(`its worker on ${job.provider} was still starting (${worker ? `worker ${worker.state}` : "no worker yet"})`);
  }
  // The job's last note: why it waits (e.g. an unschedulable pod), or how its last attempt was lost.
  if (job.reason) causes.push(job.reason);
  return causes.join("; ");
}
