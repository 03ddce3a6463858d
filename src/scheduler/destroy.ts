/**
 * Step 1 of a pass: stop and remove every worker in `destroying`, off the pass, by its
 * provider_resource_id (or, when it was never learned, by our labels). A failed destroy is
 * recorded and retried on every pass until it succeeds; only then is the worker `destroyed`.
 * Run by the leader, and for a node-bound provider (local) by the replicas of the worker's node.
 */
import { toError } from "../core/errors.js";
import type { WorkerRow } from "../store/schema.js";
import { eachWorker, isInMyCare, isStartInFlight, PROVIDER_CALL_MS, type ReconcileContext, stopCallMs } from "./context.js";
import { observeDestroyed } from "./metrics.js";

export async function destroyWorkers(ctx: ReconcileContext, isLeader: boolean): Promise<void> {
  for await (const worker of eachWorker(ctx, ["destroying"])) {
    // Another replica's (a worker of another node; not the leader): not ours to stop. A start still
    // in flight: stopped once it returned and recorded what it created.
    if (!isInMyCare(ctx, worker, isLeader)) continue;
    if (isStartInFlight(ctx, worker)) {
      if (worker.start_owner === ctx.leadership.identity.replicaId) ctx.destroyAfterStart.add(worker.id);
      continue;
    }
    // No longer in flight: an entry added by a step that read the row before the start ended goes.
    ctx.destroyAfterStart.delete(worker.id);
    if (ctx.destroying.has(worker.id)) continue;
    ctx.destroying.add(worker.id);
    ctx.inBackground("worker destroy", async () => {
      try {
        await destroyWorker(ctx, worker);
      } finally {
        ctx.destroying.delete(worker.id);
      }
    });
  }
}

async function destroyWorker(ctx: ReconcileContext, worker: WorkerRow): Promise<void> {
  const slot = ctx.providers.get(worker.provider);
  const log = ctx.log.child({ workerId: worker.id, jobId: worker.job_id, provider: worker.provider });
  if (!slot) {
    log.warn("worker of a provider that is not enabled; cannot destroy it");
    return;
  }
  const startMs = ctx.clock.nowMs();
  const stop = (resourceId: string) => ctx.calls.run(worker.provider, "stop", stopCallMs(ctx), (signal) => slot.provider.stop(resourceId, ctx.stopGraceMs, signal), worker);
  try {
    if (worker.provider_resource_id) {
      await stop(worker.provider_resource_id);
    } else {
      // Never learned its id (the start call failed or we crashed): find it by its labels.
      const resources = await ctx.calls.run(worker.provider, "list", PROVIDER_CALL_MS, (signal) => slot.provider.list(signal), worker);
      for (const resource of resources) if (resource.workerId === worker.id) await stop(resource.resourceId);
    }
    const destroyedAt = ctx.clock.nowMs();
    const row = await ctx.store.workers.transition(worker.id, "destroyed", { destroyed_at: destroyedAt });
    if (row) {
      observeDestroyed(ctx.metrics, row, startMs, destroyedAt);
      ctx.trace.destroyed(row);
      log.info({ providerResourceId: worker.provider_resource_id }, "worker destroyed");
      // Its provider has room again: a job waiting for it is claimed now, not at the next pass.
      ctx.nudge();
    }
  } catch (err) {
    const error = toError(err);
    ctx.metrics.destroyFailures.inc({ provider: worker.provider });
    await ctx.store.workers.recordDestroyFailure(worker.id, error.message);
    log.warn({ err: error }, "worker destroy failed; the next pass retries");
  }
}
