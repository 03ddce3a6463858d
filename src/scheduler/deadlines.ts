/**
 * Step 3 of a pass: every deadline of an active worker. A worker whose job or attempt has ended
 * (cancel, timeout) gets a short time to flush, then goes; one that did not register in time,
 * whose heartbeat lapsed, or that ran past its job's timeout (the agent enforces it first; this is
 * the backstop) loses its attempt.
 */
import { isTerminal } from "../core/job-state.js";
import { lastOutputOf, loseAttempt } from "./attempt-loss.js";
import { CANCEL_FLUSH_MS, type ReconcileContext, TIMEOUT_BACKSTOP_MS } from "./context.js";

export async function enforceDeadlines(ctx: ReconcileContext): Promise<void> {
  const now = ctx.clock.nowMs();
  const active = await ctx.store.workers.list(["provisioning", "waiting", "registered", "running"], 100_000);
  const jobs = await ctx.store.jobs.getMany(active.map((w) => w.job_id));
  for (const worker of active) {
    const job = jobs.get(worker.job_id);
    if (!job) continue;
    // A worker whose job or attempt has ended (cancel, timeout) gets a short time to flush, then goes.
    if (isTerminal(job.state) || job.attempts !== worker.attempt || job.state === "queued") {
      if (worker.state === "provisioning" || worker.state === "waiting" || (worker.stop_deadline_ms !== null && worker.stop_deadline_ms <= now)) {
        await ctx.store.workers.transition(worker.id, "destroying", { finished_at: now, failure_reason: worker.failure_reason || `job ${job.state}` });
      } else if (worker.stop_deadline_ms === null) {
        await ctx.store.workers.setFields(worker.id, { stop_deadline_ms: now + ctx.stopGraceMs + CANCEL_FLUSH_MS });
      }
      continue;
    }
    if ((worker.state === "waiting" || worker.state === "provisioning") && worker.registration_deadline_ms <= now) {
      if (ctx.provisioning.has(worker.id)) continue; // start() still running here; judged when it returns
      const seconds = Math.round(ctx.registrationTimeoutMs / 1000);
      const output = await lastOutputOf(ctx, worker);
      await loseAttempt(
        ctx,
        worker,
        `the worker did not register within ${seconds}s (it could not reach the control plane at its worker-facing URL, or failed to start)${output ? `; its last output: ${output}` : ""}`,
        "registration_deadline",
      );
      continue;
    }
    if (worker.state === "registered" || worker.state === "running") {
      const lastSign = Math.max(worker.last_heartbeat_ms ?? 0, worker.registered_at ?? 0, ctx.startedAtMs);
      if (now - lastSign > ctx.heartbeatTimeoutMs) {
        await loseAttempt(ctx, worker, `no heartbeat from the worker for ${Math.round((now - lastSign) / 1000)}s; it is considered lost`, "heartbeat_lapsed");
        continue;
      }
    }
    if (worker.state === "running" && worker.started_at !== null && now > worker.started_at + job.timeout_seconds * 1000 + TIMEOUT_BACKSTOP_MS) {
      const ended = await ctx.store.attempts.end(
        worker,
        "timed_out",
        now,
        { reason: `timed out after ${job.timeout_seconds}s (enforced by the control plane)`, finished_at: now, logs_incomplete: 1 },
        "timed out",
      );
      if (ended) ctx.metrics.jobsFinished.inc({ provider: job.provider, state: "timed_out" });
    }
  }
}
