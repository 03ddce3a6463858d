/**
 * Prometheus metrics of the control plane, in one registry served on /metrics.
 *
 * Two kinds of gauges:
 * - process gauges (hodei_leader, hodei_provider_up): this replica's own view, on every replica;
 * - database gauges (hodei_queue_depth, hodei_queue_delayed, hodei_workers, hodei_live_workers):
 *   counts read from the one database that every replica shares, so only the leader exports them
 *   (a sum over replicas stays right); elsewhere they are absent. They are computed when scraped,
 *   by the function given to onScrape (scheduler/metrics.ts), one refresh at a time.
 * Every histogram of time is in seconds; provider, state, phase, step and call are small closed sets.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Worker start and end phases (hodei_worker_phase_seconds). */
export type WorkerPhase = "provision" | "register" | "dispatch" | "destroy";

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "hodei_process_" });
  let refresh: () => Promise<void> = async () => {};
  let refreshing: Promise<void> | null = null;
  // The gauges below are read together by one scrape: they share one refresh.
  const collect = () => (refreshing ??= refresh().finally(() => (refreshing = null)));
  return {
    registry,
    /** Sets what refreshes the gauges computed at scrape time (the reconciler does). */
    onScrape(fn: () => Promise<void>): void {
      refresh = fn;
    },
    jobsSubmitted: new Counter({ name: "hodei_jobs_submitted_total", help: "Jobs accepted", labelNames: ["provider"], registers: [registry] }),
    jobsFinished: new Counter({ name: "hodei_jobs_finished_total", help: "Jobs that reached a final state", labelNames: ["provider", "state"], registers: [registry] }),
    workersStarted: new Counter({ name: "hodei_workers_started_total", help: "Workers started by providers", labelNames: ["provider"], registers: [registry] }),
    workerStartFailures: new Counter({ name: "hodei_worker_start_failures_total", help: "Worker starts that failed", labelNames: ["provider"], registers: [registry] }),
    workersDestroyed: new Counter({ name: "hodei_workers_destroyed_total", help: "Workers destroyed", labelNames: ["provider"], registers: [registry] }),
    destroyFailures: new Counter({ name: "hodei_worker_destroy_failures_total", help: "Failed destroy attempts (retried)", labelNames: ["provider"], registers: [registry] }),
    attemptsLost: new Counter({ name: "hodei_attempts_lost_total", help: "Attempts lost to worker failures", labelNames: ["provider", "cause"], registers: [registry] }),
    orphansDetected: new Counter({ name: "hodei_orphans_detected_total", help: "Labelled resources with no live worker", labelNames: ["provider"], registers: [registry] }),
    orphansReaped: new Counter({ name: "hodei_orphans_reaped_total", help: "Orphans destroyed", labelNames: ["provider"], registers: [registry] }),
    liveWorkers: new Gauge({ name: "hodei_live_workers", help: "Workers not yet destroyed (exported by the leader replica only)", labelNames: ["provider"], registers: [registry], collect }),
    webhookDeliveries: new Counter({ name: "hodei_webhook_deliveries_total", help: "Webhook requests by result: delivered (2xx), retried (failed, tried again later), failed (given up)", labelNames: ["result"], registers: [registry] }),
    scheduleTicks: new Counter({
      name: "hodei_schedule_ticks_total",
      help: "Schedule ticks handled, by result: fired (a job was submitted) or skipped, with why (missed, concurrency_forbid, creator_key, invalid_template, job_exists)",
      labelNames: ["result", "reason"],
      registers: [registry],
    }),
    leader: new Gauge({ name: "hodei_leader", help: "1 on the replica that holds the leader lease, else 0", registers: [registry] }),
    ...operationsMetrics(registry, collect),
    startupSeconds: new Histogram({
      name: "hodei_worker_startup_seconds",
      help: "From job claim to the agent's registration",
      labelNames: ["provider"],
      buckets: [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}

/** Queue, phases, reconcile and provider calls: what an operator asks "where does the time go" with. */
function operationsMetrics(registry: Registry, collect: () => Promise<void>) {
  const registers = [registry];
  return {
    queueDepth: new Gauge({
      name: "hodei_queue_depth",
      help: "Queued jobs that are due (waiting for a worker), by provider and priority (leader only)",
      labelNames: ["provider", "priority"],
      registers,
      collect,
    }),
    queueDelayed: new Gauge({ name: "hodei_queue_delayed", help: "Queued jobs not yet due (a later run-at or a retry backoff) (leader only)", labelNames: ["provider"], registers, collect }),
    workers: new Gauge({ name: "hodei_workers", help: "Workers not yet destroyed, by provider and state (leader only)", labelNames: ["provider", "state"], registers, collect }),
    providerUp: new Gauge({ name: "hodei_provider_up", help: "1 while this replica finds the provider available, 0 while it is marked unavailable", labelNames: ["provider"], registers, collect }),
    queueWaitSeconds: new Histogram({
      name: "hodei_job_queue_wait_seconds",
      help: "From the time an attempt was due (submit, run-at or the end of its retry backoff) to its dispatch to a worker",
      labelNames: ["provider"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    }),
    runSeconds: new Histogram({
      name: "hodei_job_run_seconds",
      help: "From dispatch to the end of a job's last attempt, by the job's final state",
      labelNames: ["provider", "state"],
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200],
      registers,
    }),
    phaseSeconds: new Histogram({
      name: "hodei_worker_phase_seconds",
      help: "Worker phases: provision (claim to provider_resource_id), register (to the agent's registration), dispatch (to the job sent), destroy (attempt end to removed)",
      labelNames: ["provider", "phase"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    }),
    logBytes: new Counter({ name: "hodei_log_bytes_total", help: "Bytes of job output stored (agents' chunks, truncation markers included)", labelNames: ["provider"], registers }),
    reconcilePassSeconds: new Histogram({
      name: "hodei_reconcile_pass_seconds",
      help: "Duration of one reconcile pass (its _count: passes run)",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    reconcileStepSeconds: new Histogram({
      name: "hodei_reconcile_step_seconds",
      help: "Duration of one reconcile step",
      labelNames: ["step"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    reconcileStepFailures: new Counter({ name: "hodei_reconcile_step_failures_total", help: "Reconcile steps that failed (retried by the next pass)", labelNames: ["step"], registers }),
    providerCallSeconds: new Histogram({
      name: "hodei_provider_call_seconds",
      help: "Duration of calls to a provider's API (start, stop, inspect, list, health, ...)",
      labelNames: ["provider", "call"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    providerCallErrors: new Counter({ name: "hodei_provider_call_errors_total", help: "Provider calls that failed or timed out", labelNames: ["provider", "call"], registers }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
