/**
 * Step 4 of a pass: asks the providers about live workers (all of them on a full pass, only the
 * suspects otherwise: a stream that closed, a process that exited). A worker that exited or
 * vanished before reporting its result loses its attempt, with its last output as the reason.
 */
import { toError, withTimeout } from "../core/errors.js";
import type { WorkerStatus } from "../providers/provider.js";
import { appendSystemLog, lastOutputOf, loseAttempt } from "./attempt-loss.js";
import { PROVIDER_CALL_MS, type ReconcileContext } from "./context.js";

export async function inspectWorkers(ctx: ReconcileContext, full: boolean): Promise<void> {
  const suspects = new Set(ctx.suspects);
  ctx.suspects.clear();
  if (!full && suspects.size === 0) return;
  const candidates = await ctx.store.workers.list(["waiting", "registered", "running"], 100_000);
  await Promise.all(
    candidates
      .filter((w) => full || suspects.has(w.id))
      .map(async (worker) => {
        const slot = ctx.providers.get(worker.provider);
        if (!slot || !worker.provider_resource_id) return;
        let status: WorkerStatus;
        try {
          status = await withTimeout(slot.provider.inspect(worker.provider_resource_id), PROVIDER_CALL_MS, `${worker.provider} inspect`);
        } catch (err) {
          ctx.log.warn({ err: toError(err), workerId: worker.id }, "worker inspect failed");
          return;
        }
        if (status.state === "pending" || status.state === "running") return;
        const what = `${worker.name} (${worker.resource_type} ${worker.provider_resource_id})`;
        const before = worker.state === "waiting" ? "before registering" : "before reporting a result";
        let reason = status.state === "exited" ? `the worker ${what} ${status.reason} ${before}` : `the worker ${what} disappeared ${before}`;
        const output = await lastOutputOf(ctx, worker);
        if (output && worker.state === "waiting") reason += `; its last output: ${output}`;
        // Re-read: the result may have been recorded while we looked.
        const fresh = await ctx.store.workers.get(worker.id);
        if (!fresh || fresh.state === "destroying" || fresh.state === "destroyed") return;
        if (output) await appendSystemLog(ctx, fresh, `[hodei] ${reason}\n[hodei] the worker's last output:\n${output}\n`);
        await loseAttempt(ctx, fresh, reason, "vanished", status.state === "exited" && status.permanent === true ? "permanent" : "infrastructure");
      }),
  );
}
