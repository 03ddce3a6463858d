/**
 * Step of a full pass, on the leader: node-bound (local) workers of a node that no replica looks
 * after any more. Only replicas of a worker's node can inspect or stop it, so when every replica of
 * that node has stopped renewing its presence row for two leases (the node died, or its replicas
 * were all removed), the attempts of its live workers are lost as a `disruption` (not the job's
 * doing: retried without counting against max_attempts) and their jobs run again elsewhere.
 *
 * The workers themselves go to `destroying` and stay there until a replica of that node is back
 * and destroys them (their processes may still run on that machine; nothing else can reach them).
 * Capacity of a node-bound provider counts per node, so they do not hold other nodes' capacity.
 * Presence rows not renewed for a long time (100 leases) are removed here too.
 */
import { ACTIVE_WORKER_STATES } from "../core/worker-state.js";
import { loseAttempt } from "./attempt-loss.js";
import { eachWorker, isNodeBound, isStartInFlight, type ReconcileContext } from "./context.js";

/** A node whose replicas have not renewed their presence for this many leases has lost its workers. */
export const NODE_LOSS_LEASES = 2;
/** Presence rows older than this many leases are removed (replicas long gone). */
const STALE_PRESENCE_LEASES = 100;

export async function loseWorkersOfDeadNodes(ctx: ReconcileContext): Promise<void> {
  const leaseMs = ctx.leadership.leaseMs;
  const now = ctx.clock.nowMs();
  const presence = await ctx.store.replicas.listPresence();
  // Present time: a leader that was itself absent does not count that time against other nodes.
  const liveNodes = new Set(presence.filter((r) => !ctx.liveness.isOverdue(r.renewed_at_ms, NODE_LOSS_LEASES * leaseMs)).map((r) => r.node_id));
  liveNodes.add(ctx.leadership.identity.nodeId);
  for await (const worker of eachWorker(ctx, ACTIVE_WORKER_STATES)) {
    if (!isNodeBound(ctx, worker) || worker.node_id === null || liveNodes.has(worker.node_id)) continue;
    if (isStartInFlight(ctx, worker)) continue;
    const reason = `no control plane on node ${worker.node_id} has been running for ${Math.round((NODE_LOSS_LEASES * leaseMs) / 1000)}s, and only one there can reach this ${worker.provider} worker; the loss is not the job's`;
    ctx.log.warn({ workerId: worker.id, jobId: worker.job_id, nodeId: worker.node_id }, "worker of a node with no running control plane; its attempt is lost");
    await loseAttempt(ctx, worker, reason, "node_lost", "disruption");
  }
  await ctx.store.replicas.removeStalePresence(now - STALE_PRESENCE_LEASES * leaseMs);
}
