/**
 * Step 2 of a pass: claim due queued jobs while their providers have capacity and start a worker
 * for each. The claim writes the job, the worker row and the OTP token (hash only) in one
 * transaction; the provider is then asked, off the pass, to start the worker with a deterministic
 * name. Its provider_resource_id is recorded (onCreated) before the agent can register.
 */
import { PermanentError, toError, UnavailableError } from "../core/errors.js";
import { newId, workerName } from "../core/ids.js";
import type { PullPolicy, Toleration } from "../core/placement.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { loseAttempt } from "./attempt-loss.js";
import { type ReconcileContext, TIMEOUT_BACKSTOP_MS } from "./context.js";

export async function provision(ctx: ReconcileContext): Promise<void> {
  const live = await ctx.store.workers.countLiveByProvider();
  const available = await ctx.health.available();
  const capacity = new Map<string, number>();
  for (const [name, slot] of ctx.providers) capacity.set(name, available.has(name) ? slot.maxWorkers - (live.get(name) ?? 0) : 0);
  for (const name of ctx.providers.keys()) ctx.metrics.liveWorkers.set({ provider: name }, live.get(name) ?? 0);
  // Jobs waiting for a provider that is down say so (one statement per such provider and pass).
  for (const name of ctx.providers.keys()) {
    if (!available.has(name)) await ctx.store.jobs.noteWaiting(name, `waiting: ${name} is unavailable (${ctx.health.detailOf(name) || "its health check failed"})`);
  }
  for (;;) {
    const open = [...capacity].filter(([, n]) => n > 0).map(([name]) => name);
    const now = ctx.clock.nowMs();
    let otpToken = "";
    const claimed = await ctx.store.attempts.claim(open, now, (job) => {
      otpToken = mintOtpToken();
      const workerId = newId();
      const deadline = now + ctx.registrationTimeoutMs;
      return {
        worker: { id: workerId, name: workerName(workerId), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: deadline },
        token: { id: newId(), tokenHash: hashToken(otpToken), expiresAtMs: deadline },
      };
    });
    if (!claimed) return;
    const { job, worker } = claimed;
    capacity.set(job.provider, (capacity.get(job.provider) ?? 0) - 1);
    ctx.log.info({ jobId: job.id, workerId: worker.id, attempt: job.attempts }, "job claimed");
    ctx.provisioning.add(worker.id);
    ctx.inBackground("worker start", async () => {
      try {
        await startWorker(ctx, job, worker, otpToken);
      } finally {
        ctx.provisioning.delete(worker.id);
      }
    });
  }
}

async function startWorker(ctx: ReconcileContext, job: JobRow, worker: WorkerRow, otpToken: string): Promise<void> {
  const slot = ctx.providers.get(job.provider)!;
  const log = ctx.log.child({ jobId: job.id, workerId: worker.id, provider: job.provider });
  let recorded: WorkerRow | null | undefined;
  const record = async (resourceId: string, resourceType: WorkerRow["resource_type"] & string, resourcesApplied = "") => {
    recorded = await ctx.store.attempts.recordProvisioned(worker.id, resourceId, resourceType, ctx.clock.nowMs(), resourcesApplied);
    log.info({ providerResourceId: resourceId, resourceType }, "worker created; provider_resource_id recorded on worker and OTP token");
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
    }, signal));
    if (recorded === undefined) await record(resource.resourceId, resource.resourceType, resource.resourcesApplied);
    ctx.metrics.workersStarted.inc({ provider: job.provider });
    if (!recorded) log.info("attempt ended while the worker started; it will be destroyed");
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
  }
  ctx.nudge();
}
