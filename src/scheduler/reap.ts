/**
 * Step 5 of a full pass: labelled resources of each provider that no live worker row owns
 * (orphans: a crash between create and record, a worker row destroyed while its resource lived on,
 * another control plane's leftovers of this cluster) are destroyed once older than the grace, off
 * the pass (a stop can take its whole grace), one stop per resource at a time.
 * The worker rows of one provider's resources are read in one query, however many there are.
 *
 * Providers that keep OTP tokens beside their workers (the listTokenSecrets capability: a
 * Kubernetes Secret per pod) have those deleted here too: at once when the token is spent (its
 * worker registered, or its attempt ended), and, past the grace, when no worker row or no live
 * resource owns it.
 */
import { toError } from "../core/errors.js";
import type { ProviderResource, TokenSecret, WorkerProvider } from "../providers/provider.js";
import type { WorkerRow } from "../store/schema.js";
import { isStartInFlight, PROVIDER_CALL_MS, type ReconcileContext, stopCallMs } from "./context.js";

/**
 * A resource is an orphan when no worker row owns it: none (never recorded, or removed by
 * retention), a destroyed one, or one that recorded another provider_resource_id.
 */
export function isOrphan(resource: ProviderResource, worker: WorkerRow | undefined): boolean {
  if (!worker || worker.state === "destroyed") return true;
  return worker.provider_resource_id !== null && worker.provider_resource_id !== resource.resourceId;
}

export async function reapOrphans(ctx: ReconcileContext, isLeader: boolean): Promise<void> {
  const now = ctx.clock.nowMs();
  for (const [name, slot] of ctx.providers) {
    // A node-bound provider lists this machine's resources only: every replica reaps its own node's.
    // Any other provider's resources are one set for all replicas: the leader reaps them.
    if (!slot.provider.isNodeBound && !isLeader) continue;
    let resources;
    try {
      resources = await ctx.calls.run(name, "list", PROVIDER_CALL_MS, (signal) => slot.provider.list(signal));
    } catch (err) {
      ctx.log.warn({ err: toError(err), provider: name }, "provider list failed; orphans not checked");
      continue;
    }
    const workers = await ctx.store.workers.getMany(resources.map((r) => r.workerId));
    for (const resource of resources) {
      if (ctx.destroying.has(resource.workerId)) continue;
      const worker = workers.get(resource.workerId);
      if (worker && isStartInFlight(ctx, worker)) continue;
      if (!isOrphan(resource, worker)) continue;
      if (now - resource.createdAtMs < ctx.orphanGraceMs) continue;
      // Off the pass, as a worker's destroy is: a stop can take its whole grace, or hang to its limit.
      const key = `${name}/${resource.resourceId}`;
      if (ctx.reaping.has(key)) continue;
      ctx.reaping.add(key);
      ctx.metrics.orphansDetected.inc({ provider: name });
      ctx.log.warn({ provider: name, providerResourceId: resource.resourceId, workerId: resource.workerId }, "orphan found; destroying it");
      ctx.inBackground("orphan destroy", async () => {
        try {
          await ctx.calls.run(name, "stop", stopCallMs(ctx), (signal) => slot.provider.stop(resource.resourceId, ctx.stopGraceMs, signal));
          ctx.metrics.orphansReaped.inc({ provider: name });
        } catch (err) {
          ctx.log.warn({ err: toError(err), providerResourceId: resource.resourceId }, "orphan destroy failed; the next pass retries");
        } finally {
          ctx.reaping.delete(key);
        }
      });
    }
    await reapTokenSecrets(ctx, name, slot.provider, resources);
  }
}

/**
 * Why a token secret should go, or null while its token may still be redeemed. `resources` is the
 * provider's list from before the secrets were listed: a worker started in between has a young
 * secret, which the grace protects.
 */
export function spentSecretReason(secret: TokenSecret, worker: WorkerRow | undefined, resources: ProviderResource[], nowMs: number, graceMs: number): string | null {
  if (worker && worker.state !== "provisioning" && worker.state !== "waiting") return `its worker is ${worker.state}`;
  if (nowMs - secret.createdAtMs < graceMs) return null;
  if (!worker) return "no worker row owns it";
  if (!resources.some((r) => r.resourceId === secret.resourceId)) return "its worker's resource is gone";
  return null;
}

async function reapTokenSecrets(ctx: ReconcileContext, name: string, provider: WorkerProvider, resources: ProviderResource[]): Promise<void> {
  const { listTokenSecrets, deleteTokenSecret } = provider;
  if (!listTokenSecrets || !deleteTokenSecret) return;
  let secrets: TokenSecret[];
  try {
    secrets = await ctx.calls.run(name, "list token secrets", PROVIDER_CALL_MS, (signal) => listTokenSecrets.call(provider, signal));
  } catch (err) {
    ctx.log.warn({ err: toError(err), provider: name }, "token secret list failed; not checked this pass");
    return;
  }
  if (secrets.length === 0) return;
  const now = ctx.clock.nowMs();
  const workers = await ctx.store.workers.getMany(secrets.map((s) => s.workerId));
  for (const secret of secrets) {
    const owner = workers.get(secret.workerId);
    if (owner && isStartInFlight(ctx, owner)) continue;
    const why = spentSecretReason(secret, workers.get(secret.workerId), resources, now, ctx.orphanGraceMs);
    if (!why) continue;
    try {
      await ctx.calls.run(name, "delete token secret", PROVIDER_CALL_MS, (signal) => deleteTokenSecret.call(provider, secret.name, signal));
      ctx.log.info({ provider: name, secret: secret.name, workerId: secret.workerId, why }, "token secret deleted");
    } catch (err) {
      ctx.log.warn({ err: toError(err), provider: name, secret: secret.name }, "token secret delete failed; the next pass retries");
    }
  }
}
