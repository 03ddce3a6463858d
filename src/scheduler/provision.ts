/**
 * Step 2 of a pass, on every replica: claim due queued jobs of each available provider and start a
 * worker for each. A claim takes a batch of jobs of one provider and writes their jobs, worker rows
 * and OTP tokens (hash only) in one transaction; the provider's capacity is counted inside that
 * claim (store/attempts.ts claimBatch), so replicas claiming at once never exceed it together. The
 * provider is then asked, off the pass, to start each worker with a deterministic name. Its
 * provider_resource_id is recorded (onCreated) before the agent can register.
 *
 * A start in flight is on the worker's row (start_owner, start_deadline_ms), not in this process's
 * memory, so the leader on another replica does not fail the worker at its registration deadline
 * while this replica's start still runs, and does trust it no longer once its start deadline passed
 * (this replica may have died mid-start).
 */
import { PermanentError, toError, UnavailableError } from "../core/errors.js";
import { newId, workerName } from "../core/ids.js";
import type { PullPolicy, Toleration } from "../core/placement.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { loseAttempt } from "./attempt-loss.js";
import { type ReconcileContext, START_MARGIN_MS, TIMEOUT_BACKSTOP_MS } from "./context.js";
import { observeProvisioned } from "./metrics.js";

/** Jobs claimed at most per claim statement for one provider, unless ReconcilerOptions.claimBatch says. */
export const DEFAULT_CLAIM_BATCH = 32;

export async function provision(ctx: ReconcileContext): Promise<void> {
  const available = await ctx.health.available();
  // Jobs waiting for a provider that is down say so (one statement per such provider and pass).
  for (const name of ctx.providers.keys()) {
    if (!available.has(name)) await ctx.store.jobs.noteWaiting(name, `waiting: ${name} is unavailable (${ctx.health.detailOf(name) || "its health check failed"})`);
  }
  const { replicaId, nodeId } = ctx.leadership.identity;
  const open = new Set([...ctx.providers.keys()].filter((name) => available.has(name)));
  while (open.size > 0) {
    for (const name of [...open]) {
      const slot = ctx.providers.get(name)!;
      const now = ctx.clock.nowMs();
      const otpTokens = new Map<string, string>();
      const claimed = await ctx.store.attempts.claimBatch(
        { provider: name, nowMs: now, limit: ctx.claimBatch ?? DEFAULT_CLAIM_BATCH, maxWorkers: slot.maxWorkers, nodeId: slot.provider.isNodeBound ? nodeId : null },
        (job) => {
          const otpToken = mintOtpToken();
          const workerId = newId();
          otpTokens.set(workerId, otpToken);
          const deadline = now + ctx.registrationTimeoutMs;
          return {
            worker: {
              id: workerId,
              name: workerName(workerId),
              jobId: job.id,
              attempt: job.attempts,
              provider: job.provider,
              registrationDeadlineMs: deadline,
              nodeId,
              startOwner: replicaId,
              startDeadlineMs: deadline + START_MARGIN_MS,
            },
            token: { id: newId(), tokenHash: hashToken(otpToken), expiresAtMs: deadline },
          };
        },
      );
      // Fewer than asked: the queue is empty or the provider is full for now.
      if (claimed.length < (ctx.claimBatch ?? DEFAULT_CLAIM_BATCH)) open.delete(name);
      for (const { job, worker } of claimed) {
        ctx.log.info({ jobId: job.id, workerId: worker.id, attempt: job.attempts }, "job claimed");
        ctx.trace.claimed(job, worker);
        const otpToken = otpTokens.get(worker.id)!;
        ctx.inBackground("worker start", () => startWorker(ctx, job, worker, otpToken));
      }
    }
  }
}

async function startWorker(ctx: ReconcileContext, job: JobRow, worker: WorkerRow, otpToken: string): Promise<void> {
  const slot = ctx.providers.get(job.provider)!;
  const log = ctx.log.child({ jobId: job.id, workerId: worker.id, provider: job.provider });
  let recorded: WorkerRow | null | undefined;
  let isStartCleared = false;
  let isClean = false;
  /** The worker's state when its start was cleared (endStart): destroying means its attempt ended meanwhile. */
  let stateAtEnd: WorkerRow["state"] | null = null;
  const record = async (resourceId: string, resourceType: WorkerRow["resource_type"] & string, resourcesApplied = "", isStartDone = false) => {
    recorded = await ctx.store.attempts.recordProvisioned(worker.id, resourceId, resourceType, ctx.clock.nowMs(), resourcesApplied, isStartDone);
    isStartCleared = isStartDone && recorded !== null;
    ctx.trace.provisioned(job, recorded);
  };
  try {
    // A start that outlasts the registration deadline is as good as lost: abort it then.
    const resource = await ctx.calls.run(job.provider, "start", ctx.registrationTimeoutMs, (signal) => slot.provider.start({
      workerId: worker.id,
      name: worker.name,
      jobId: job.id,
      attempt: worker.attempt,
      otpToken,
      serverUrl: slot.workerServerUrl,
      image: job.image,
      cpuMillis: job.cpu_millis,
      memoryMb: job.memory_mb,
      pullPolicy: job.pull_policy as PullPolicy,
      nodeSelector: JSON.parse(job.node_selector) as Record<string, string>,
      tolerations: JSON.parse(job.tolerations) as Toleration[],
      deadlineSeconds: job.timeout_seconds + Math.ceil((ctx.registrationTimeoutMs + TIMEOUT_BACKSTOP_MS) / 1000) + 60,
      onCreated: (r) => record(r.resourceId, r.resourceType, r.resourcesApplied),
    }, signal), worker);
    if (recorded === undefined) await record(resource.resourceId, resource.resourceType, resource.resourcesApplied, true);
    // Once start() has returned: a local worker then has its assignment (a test freezes the server on this line).
    log.info({ providerResourceId: resource.resourceId, resourceType: resource.resourceType }, "worker created; provider_resource_id recorded on worker and OTP token");
    observeProvisioned(ctx.metrics, worker, recorded?.provisioned_at ?? ctx.clock.nowMs());
    if (!recorded) log.info("attempt ended while the worker started; it will be destroyed");
    isClean = recorded !== null;
  } catch (err) {
    const error = toError(err);
    ctx.metrics.workerStartFailures.inc({ provider: job.provider });
    log.warn({ err: error }, "worker start failed");
    if (error instanceof UnavailableError) {
      // The provider itself is down: the job waits for it; this try does not count as an attempt.
      ctx.health.markUnhealthy(job.provider, error.message);
      await loseAttempt(ctx, worker, `${job.provider} is unavailable: ${error.message}`, "provider_unavailable", "disruption");
    } else {
      await loseAttempt(ctx, worker, `could not start the worker on ${job.provider}: ${error.message}`, "start_failed", error instanceof PermanentError ? "permanent" : "infrastructure");
    }
  } finally {
    // The start returned, either way: no longer in flight (unless recordProvisioned said so already).
    if (!isStartCleared) stateAtEnd = await ctx.store.attempts.endStart(worker.id, ctx.leadership.identity.replicaId);
  }
  // A clean start leaves the pass nothing to do: the agent registers by itself, and a pass now would
  // hold this process's event loop just as its Register arrives. A failed start, an attempt that
  // ended meanwhile (the row says destroying when the start was cleared, whether or not a destroy
  // step saw it in flight), or a destroy step that passed this worker over while it started, runs one now.
  const isAwaited = ctx.destroyAfterStart.delete(worker.id);
  if (!isClean || isAwaited || stateAtEnd === "destroying") ctx.nudge();
}
