/**
 * Step 3 of a pass: every deadline of an active worker. A worker whose job or attempt has ended
 * (cancel, timeout) gets a short time to flush, then goes; one that did not register in time,
 * whose heartbeat lapsed, or that ran past its job's timeout (the agent enforces it first; this is
 * the backstop) loses its attempt. Deadlines count present time only (liveness.ts): a control
 * plane that was stopped or frozen never blames its workers for its own absence.
 */
import { isTerminal } from "../core/job-state.js";
import { lastOutputOf, loseAttempt } from "./attempt-loss.js";
import { ACTIVE_WORKER_STATES } from "../core/worker-state.js";
import type { WorkerRow } from "../store/schema.js";
import { eachWorker, flushWindowMs, isStartInFlight, PAGE_SIZE, type ReconcileContext, stopDeadlineMs, TIMEOUT_BACKSTOP_MS } from "./context.js";
import { observeJobFinished } from "./metrics.js";

export async function enforceDeadlines(ctx: ReconcileContext): Promise<void> {
  let page: WorkerRow[] = [];
  for await (const worker of eachWorker(ctx, ACTIVE_WORKER_STATES)) {
    page.push(worker);
    if (page.length === PAGE_SIZE) {
      await enforcePage(ctx, page);
      page = [];
    }
  }
  await enforcePage(ctx, page);
}

/** The deadlines of one page of active workers, with their jobs read in one query. */
async function enforcePage(ctx: ReconcileContext, active: WorkerRow[]): Promise<void> {
  const { liveness } = ctx;
  const now = ctx.clock.nowMs();
  const jobs = await ctx.store.jobs.getMany(active.map((w) => w.job_id));
  for (const worker of active) {
    const job = jobs.get(worker.job_id);
    if (!job) continue;
    // A worker whose job or attempt has ended (cancel, timeout) gets a short time to flush, then goes.
    if (isTerminal(job.state) || job.attempts !== worker.attempt || job.state === "queued") {
      const isFlushOver = worker.stop_deadline_ms !== null && liveness.isOverdue(worker.stop_deadline_ms - flushWindowMs(ctx), flushWindowMs(ctx));
      if (worker.state === "provisioning" || worker.state === "waiting" || isFlushOver) {
        await ctx.store.workers.transition(worker.id, "destroying", { finished_at: now, failure_reason: worker.failure_reason || `job ${job.state}` });
      } else if (worker.stop_deadline_ms === null) {
        // Its job ended elsewhere (another replica, a race with dispatch): tell its agent if it is ours.
        await ctx.store.workers.setFields(worker.id, { stop_deadline_ms: stopDeadlineMs(ctx, now) });
        ctx.agents.cancel(worker.id, job.reason || `job ${job.state}`, ctx.stopGraceMs);
      }
      continue;
    }
    if (worker.state === "waiting" && worker.pending_since_ms !== null) {
      // Its provider says it waits for something outside it (an unschedulable pod): the provider's
      // pending timeout judges it, not the registration deadline (which inspect keeps moving on).
      await enforcePendingTimeout(ctx, worker);
      continue;
    }
    // The registration deadline counts from when it was last set (the claim, or the last time its
    // provider said it was waiting), in present time.
    const registrationFromMs = worker.registration_deadline_ms - ctx.registrationTimeoutMs;
    if ((worker.state === "waiting" || worker.state === "provisioning") && liveness.isOverdue(registrationFromMs, ctx.registrationTimeoutMs)) {
      // start() still running on some replica (its row says so): judged when it returns, or once
      // its start deadline passed (that replica may have died mid-start).
      if (isStartInFlight(ctx, worker)) continue;
      const seconds = Math.round(ctx.registrationTimeoutMs / 1000);
      const output = await lastOutputOf(ctx, worker);
      // A start still on the row past its start deadline never returned: the replica running it died
      // (or hung) mid-start, so the agent may never have been given its assignment. The control
      // plane's loss, not the job's: retried without counting (a disruption).
      const isAbandonedStart = worker.start_owner !== null;
      const why = isAbandonedStart
        ? `; the control plane replica starting it (${worker.start_owner}) never finished the start, so the loss is not the job's`
        : "";
      await loseAttempt(
        ctx,
        worker,
        `the worker did not register within ${seconds}s (it could not reach the control plane at its worker-facing URL, or failed to start)${why}${output ? `; its last output: ${output}` : ""}`,
        "registration_deadline",
        isAbandonedStart ? "disruption" : "infrastructure",
      );
      continue;
    }
    if (worker.state === "registered" || worker.state === "running") {
      const lastSign = Math.max(worker.last_heartbeat_ms ?? 0, worker.registered_at ?? 0);
      const silentMs = liveness.presentMsSince(lastSign);
      if (silentMs > ctx.heartbeatTimeoutMs) {
        await loseAttempt(ctx, worker, `no heartbeat from the worker for ${Math.round(silentMs / 1000)}s; it is considered lost`, "heartbeat_lapsed");
        continue;
      }
    }
    if (worker.state === "running" && worker.started_at !== null && liveness.isOverdue(worker.started_at, job.timeout_seconds * 1000 + TIMEOUT_BACKSTOP_MS)) {
      const ended = await ctx.store.attempts.end(
        worker,
        "timed_out",
        now,
        { reason: `timed out after ${job.timeout_seconds}s (enforced by the control plane)`, finished_at: now, logs_incomplete: 1 },
        "timed out",
      );
      if (ended) observeJobFinished(ctx.metrics, job.provider, "timed_out", worker.started_at, now);
      ctx.trace.jobEnded(ended);
    }
  }
}

/**
 * A worker its provider has reported waiting (pending_since_ms) for longer than the provider's
 * pending timeout, in present time, fails its attempt with the provider's message. Permanent: a new
 * worker would wait for the same thing (a cluster that cannot place the pod), and the job's own
 * queue timeout or a cancel ends it sooner if the user wants.
 */
async function enforcePendingTimeout(ctx: ReconcileContext, worker: WorkerRow): Promise<void> {
  const timeoutMs = ctx.providers.get(worker.provider)?.pendingTimeoutMs ?? 0;
  if (timeoutMs <= 0 || worker.pending_since_ms === null || !ctx.liveness.isOverdue(worker.pending_since_ms, timeoutMs)) return;
  // An unavailable provider cannot tell whether the worker still waits: judge it once it answers.
  if (ctx.health.isMarkedUnavailable(worker.provider)) return;
  const reason = `the worker could not run within ${formatDuration(timeoutMs)} (the provider's pending timeout): ${worker.pending_reason}`;
  await loseAttempt(ctx, worker, reason, "pending_timeout", "permanent");
}

/** 600000 -> "10m", 90000 -> "90s". */
function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}
