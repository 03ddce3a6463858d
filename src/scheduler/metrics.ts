/**
 * Where the control plane records its metrics (src/metrics.ts defines them): one function per
 * moment of a job's and a worker's life, called by the scheduler and the server at that moment,
 * and the refresh of the gauges read from the database when /metrics is scraped.
 *
 * Durations come from the rows' own times (claim, provisioned, registered, dispatched, ended,
 * destroyed: all written with the injected clock), so a phase is measured the same way whichever
 * replica saw its start. A negative duration (a clock stepped back between replicas) counts as 0.
 */
import type { Clock } from "../core/clock.js";
import { toError } from "../core/errors.js";
import { LIVE_WORKER_STATES } from "../core/worker-state.js";
import type { Metrics, WorkerPhase } from "../metrics.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import type { ReconcileContext } from "./context.js";

const seconds = (fromMs: number, toMs: number) => Math.max(0, toMs - fromMs) / 1000;

function observePhase(metrics: Metrics, provider: string, phase: WorkerPhase, fromMs: number | null, toMs: number): void {
  if (fromMs !== null) metrics.phaseSeconds.observe({ provider, phase }, seconds(fromMs, toMs));
}

/** The provider returned the worker's provider_resource_id (provisioning -> waiting). */
export function observeProvisioned(metrics: Metrics, worker: WorkerRow, nowMs: number): void {
  metrics.workersStarted.inc({ provider: worker.provider });
  observePhase(metrics, worker.provider, "provision", worker.created_at, nowMs);
}

/** The agent redeemed its OTP token (waiting -> registered); `worker` is the registered row. */
export function observeRegistered(metrics: Metrics, worker: WorkerRow, nowMs: number): void {
  metrics.startupSeconds.observe({ provider: worker.provider }, seconds(worker.created_at, nowMs));
  observePhase(metrics, worker.provider, "register", worker.provisioned_at, nowMs);
}

/**
 * The job was dispatched to its worker (registered -> running). Queue wait: from when this attempt
 * was due (not_before_ms: the submit or run-at for a first attempt, the end of the backoff for a
 * retry) to now, so the provision and register phases are part of it.
 */
export function observeDispatched(metrics: Metrics, job: JobRow, worker: WorkerRow, nowMs: number): void {
  metrics.queueWaitSeconds.observe({ provider: job.provider }, seconds(job.not_before_ms, nowMs));
  observePhase(metrics, worker.provider, "dispatch", worker.registered_at, nowMs);
}

/** A job reached a final state; startedAtMs: when its last attempt was dispatched (null: it never ran). */
export function observeJobFinished(metrics: Metrics, provider: string, state: string, startedAtMs: number | null, nowMs: number): void {
  metrics.jobsFinished.inc({ provider, state });
  if (startedAtMs !== null) metrics.runSeconds.observe({ provider, state }, seconds(startedAtMs, nowMs));
}

/** The provider confirmed the worker gone (destroying -> destroyed): from its attempt's end, or the destroy's start. */
export function observeDestroyed(metrics: Metrics, worker: WorkerRow, destroyStartMs: number, nowMs: number): void {
  metrics.workersDestroyed.inc({ provider: worker.provider });
  observePhase(metrics, worker.provider, "destroy", worker.finished_at ?? destroyStartMs, nowMs);
}

export function observeLogBytes(metrics: Metrics, provider: string, bytes: number): void {
  if (bytes > 0) metrics.logBytes.inc({ provider }, bytes);
}

/** Times one call to a provider's API ("last output" is labelled last_output). */
export async function timeProviderCall<T>(metrics: Metrics | undefined, clock: Clock, provider: string, call: string, run: () => Promise<T>): Promise<T> {
  if (!metrics) return run();
  const labels = { provider, call: call.replaceAll(" ", "_") };
  const startMs = clock.nowMs();
  try {
    return await run();
  } catch (err) {
    metrics.providerCallErrors.inc(labels);
    throw err;
  } finally {
    metrics.providerCallSeconds.observe(labels, seconds(startMs, clock.nowMs()));
  }
}

/** Times one reconcile step ("queue deadlines" is labelled queue_deadlines); a failure is counted and rethrown. */
export async function timeReconcileStep(metrics: Metrics, clock: Clock, step: string, run: () => Promise<void>): Promise<void> {
  const labels = { step: step.replaceAll(" ", "_") };
  const startMs = clock.nowMs();
  try {
    await run();
  } catch (err) {
    metrics.reconcileStepFailures.inc(labels);
    throw err;
  } finally {
    metrics.reconcileStepSeconds.observe(labels, seconds(startMs, clock.nowMs()));
  }
}

/**
 * Sets the gauges of a scrape. This replica's own view (provider availability) always; the counts
 * read from the database on the leader only, elsewhere they are cleared (absent), so that a sum
 * over replicas counts each job and worker once. A failed read clears them too (absent, not stale)
 * and is logged; the scrape still answers. Two indexed queries: queued jobs by provider and
 * priority (the queued range of jobs_queue) and live workers by provider and state (workers_state).
 */
export async function refreshScrapeGauges(ctx: ReconcileContext): Promise<void> {
  const { metrics } = ctx;
  for (const name of ctx.providers.keys()) metrics.providerUp.set({ provider: name }, ctx.health.isMarkedUnavailable(name) ? 0 : 1);
  const databaseGauges = [metrics.queueDepth, metrics.queueDelayed, metrics.workers, metrics.liveWorkers];
  if (!ctx.leadership.isLeader()) {
    for (const gauge of databaseGauges) gauge.reset();
    return;
  }
  let queued: Awaited<ReturnType<typeof ctx.store.jobs.countQueued>>;
  let workers: Awaited<ReturnType<typeof ctx.store.workers.countLiveByProviderAndState>>;
  try {
    queued = await ctx.store.jobs.countQueued(ctx.clock.nowMs());
    workers = await ctx.store.workers.countLiveByProviderAndState();
  } catch (err) {
    ctx.log.warn({ err: toError(err) }, "could not read the queue and worker counts for /metrics; they are left out of this scrape");
    for (const gauge of databaseGauges) gauge.reset();
    return;
  }
  // Reset and set with no await between: a scrape never reads half of it.
  for (const gauge of databaseGauges) gauge.reset();
  for (const name of ctx.providers.keys()) {
    metrics.queueDelayed.set({ provider: name }, 0);
    metrics.liveWorkers.set({ provider: name }, 0);
    for (const state of LIVE_WORKER_STATES) metrics.workers.set({ provider: name, state }, 0);
  }
  for (const row of queued) {
    if (row.isDue) metrics.queueDepth.inc({ provider: row.provider, priority: String(row.priority) }, row.count);
    else metrics.queueDelayed.inc({ provider: row.provider }, row.count);
  }
  for (const row of workers) {
    metrics.workers.inc({ provider: row.provider, state: row.state }, row.count);
    metrics.liveWorkers.inc({ provider: row.provider }, row.count);
  }
}
