/**
 * Step 5 of a full pass: labelled resources of each provider that no live worker row owns
 * (orphans: a crash between create and record, a worker row destroyed while its resource lived on,
 * another control plane's leftovers of this cluster) are destroyed once older than the grace.
 */
import { toError } from "../core/errors.js";
import { PROVIDER_CALL_MS, type ReconcileContext, stopCallMs } from "./context.js";

export async function reapOrphans(ctx: ReconcileContext): Promise<void> {
  const now = ctx.clock.nowMs();
  for (const [name, slot] of ctx.providers) {
    let resources;
    try {
      resources = await ctx.calls.run(name, "list", PROVIDER_CALL_MS, (signal) => slot.provider.list(signal));
    } catch (err) {
      ctx.log.warn({ err: toError(err), provider: name }, "provider list failed; orphans not checked");
      continue;
    }
    for (const resource of resources) {
      if (ctx.provisioning.has(resource.workerId) || ctx.destroying.has(resource.workerId)) continue;
      const worker = await ctx.store.workers.get(resource.workerId);
      const isOwned = worker && worker.state !== "destroyed" && (worker.provider_resource_id === null || worker.provider_resource_id === resource.resourceId);
      if (isOwned) continue;
      if (now - resource.createdAtMs < ctx.orphanGraceMs) continue;
      ctx.metrics.orphansDetected.inc({ provider: name });
      ctx.log.warn({ provider: name, providerResourceId: resource.resourceId, workerId: resource.workerId }, "orphan found; destroying it");
      try {
        await ctx.calls.run(name, "stop", stopCallMs(ctx), (signal) => slot.provider.stop(resource.resourceId, ctx.stopGraceMs, signal));
        ctx.metrics.orphansReaped.inc({ provider: name });
      } catch (err) {
        ctx.log.warn({ err: toError(err), providerResourceId: resource.resourceId }, "orphan destroy failed; the next pass retries");
      }
    }
  }
}
