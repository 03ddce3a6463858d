/**
 * Step 4 of a pass: asks the providers about live workers (all of them on a full pass, only the
 * suspects otherwise: a stream that closed, a process that exited). A worker that exited or
 * vanished before reporting its result loses its attempt, with its last output as the reason.
 * One that cannot run yet for a reason outside it (an unschedulable pod) waits, with that reason
 * on its job, until it runs or the provider's pending timeout (deadlines.ts) ends it.
 * Workers of a provider marked unavailable are not judged now: their provider cannot tell.
 */
import { toError } from "../core/errors.js";
import type { WorkerStatus } from "../providers/provider.js";
import type { WorkerRow } from "../store/schema.js";
import { appendSystemLog, lastOutputOf, loseAttempt } from "./attempt-loss.js";
import { eachWorker, isInMyCare, isStartInFlight, PROVIDER_CALL_MS, type ReconcileContext } from "./context.js";

export async function inspectWorkers(ctx: ReconcileContext, full: boolean, isLeader: boolean): Promise<void> {
  const suspects = new Set(ctx.suspects);
  ctx.suspects.clear();
  if (!full && suspects.size === 0) return;
  const checks: Promise<void>[] = [];
  // Only the workers in this replica's care: a local worker of another node is not visible here
  // (its pid means nothing on this host), and workers elsewhere are the leader's.
  if (full) {
    for await (const worker of eachWorker(ctx, ["waiting", "registered", "running"])) if (isInMyCare(ctx, worker, isLeader)) checks.push(inspectOne(ctx, worker));
  } else {
    for (const id of suspects) {
      const worker = await ctx.store.workers.get(id);
      if (worker && (worker.state === "waiting" || worker.state === "registered" || worker.state === "running") && isInMyCare(ctx, worker, isLeader)) checks.push(inspectOne(ctx, worker));
    }
  }
  await Promise.all(checks); // ProviderCalls bounds how many run at once
}

async function inspectOne(ctx: ReconcileContext, worker: WorkerRow): Promise<void> {
  const slot = ctx.providers.get(worker.provider);
  if (!slot || !worker.provider_resource_id || ctx.health.isMarkedUnavailable(worker.provider)) return;
  const resourceId = worker.provider_resource_id;
  let status: WorkerStatus;
  try {
    status = await ctx.calls.run(worker.provider, "inspect", PROVIDER_CALL_MS, (signal) => slot.provider.inspect(resourceId, signal), worker);
  } catch (err) {
    ctx.log.warn({ err: toError(err), workerId: worker.id }, "worker inspect failed");
    return;
  }
  if (status.state === "pending" && status.detail) return notePending(ctx, worker, status.detail);
  if (status.state === "pending" || status.state === "running") {
    if (worker.pending_since_ms !== null) await ctx.store.attempts.clearPending(worker);
    return;
  }
  // A start still on the row: this replica's own is judged once it returns (its start() learns
  // of a failure first).
  const isStartOnRow = worker.state === "waiting" && worker.start_owner !== null;
  if (isStartOnRow && worker.start_owner === ctx.leadership.identity.replicaId && isStartInFlight(ctx, worker)) return;
  const what = `${worker.name} (${worker.resource_type} ${resourceId})`;
  const before = worker.state === "waiting" ? "before registering" : "before reporting a result";
  const happened = status.state === "exited" ? `the worker ${what} ${status.reason} ${before}` : `the worker ${what} disappeared ${before}`;
  // Not the job's doing: its provider was unavailable while the worker lived (and took it down), or
  // the worker was started by an earlier run of the control plane, or by another replica whose
  // start never finished, and never registered (that run or replica died while it started it: a
  // local agent, say, never got its assignment).
  const isProviderLoss = ctx.health.wasUnavailableSince(worker.provider, worker.created_at);
  const isRestartLoss = worker.state === "waiting" && worker.created_at < ctx.liveness.startedAtMs;
  const output = await lastOutputOf(ctx, worker);
  const because = isProviderLoss
    ? `; ${worker.provider} was unavailable meanwhile, so the loss is the provider's, not the job's`
    : isRestartLoss
      ? "; the control plane restarted while the worker was starting, so the loss is not the job's"
      : isStartOnRow
        ? `; the control plane replica starting it (${worker.start_owner}) never finished the start, so the loss is not the job's`
        : "";
  // A worker that never registered left nothing else to go by: its output joins the reason.
  const reason = `${happened}${because}${output && worker.state === "waiting" ? `; its last output: ${output}` : ""}`;
  // Re-read: the result may have been recorded while we looked.
  const fresh = await ctx.store.workers.get(worker.id);
  if (!fresh || fresh.state === "destroying" || fresh.state === "destroyed") return;
  if (output) await appendSystemLog(ctx, fresh, `[hodei] ${happened}\n[hodei] the worker's last output:\n${output}\n`);
  const kind = status.state === "exited" && status.permanent === true ? "permanent" : isProviderLoss || isRestartLoss || isStartOnRow ? "disruption" : "infrastructure";
  await loseAttempt(ctx, fresh, reason, "vanished", kind);
}

/**
 * The provider says the worker cannot run yet, and why (the scheduler's message): the job shows it
 * as its reason, and the worker keeps its whole registration time for when it does run (its
 * deadline and token expiry move on). The deadlines step fails it once the provider's pending
 * timeout has passed.
 */
async function notePending(ctx: ReconcileContext, worker: WorkerRow, detail: string): Promise<void> {
  if (worker.state !== "waiting") return;
  const now = ctx.clock.nowMs();
  const noted = await ctx.store.attempts.notePending(worker, detail, now, now + ctx.registrationTimeoutMs);
  if (noted && worker.pending_since_ms === null) ctx.log.info({ jobId: worker.job_id, workerId: worker.id, detail }, "worker waits for its provider");
}
