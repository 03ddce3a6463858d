/**
 * Step 5 of a full pass: labelled resources of each provider that no live worker row owns
 * (orphans: a crash between create and record, a worker row destroyed while its resource lived on,
 * another control plane's leftovers of this cluster) are destroyed once older than the grace.
 * The worker rows of one provider's resources are read in one query, however many there are.
 */
import { toError } from "../core/errors.js";
import type { ProviderResource } from "../providers/provider.js";
import type { WorkerRow } from "../store/schema.js";
import { PROVIDER_CALL_MS, type ReconcileContext, stopCallMs } from "./context.js";

/**
 * A resource is an orphan when no worker row owns it: none (never recorded, or removed by
 * retention), a destroyed one, or one that recorded another provider_resource_id.
 */
export function isOrphan(resource: ProviderResource, worker: WorkerRow | undefined): boolean {
  if (!worker || worker.state === "destroyed") return true;
  return worker.provider_resource_id !== null && worker.provider_resource_id !== resource.resourceId;
}

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
    const workers = await ctx.store.workers.getMany(resources.map((r) => r.workerId));
    for (const resource of resources) {
      if (ctx.provisioning.has(resource.workerId) || ctx.destroying.has(resource.workerId)) continue;
      if (!isOrphan(resource, workers.get(resource.workerId))) continue;
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
