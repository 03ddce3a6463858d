/** Prometheus metrics of the control plane, in one registry served on /metrics. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "hodei_process_" });
  return {
    registry,
    jobsSubmitted: new Counter({ name: "hodei_jobs_submitted_total", help: "Jobs accepted", labelNames: ["provider"], registers: [registry] }),
    jobsFinished: new Counter({ name: "hodei_jobs_finished_total", help: "Jobs that reached a final state", labelNames: ["provider", "state"], registers: [registry] }),
    workersStarted: new Counter({ name: "hodei_workers_started_total", help: "Workers started by providers", labelNames: ["provider"], registers: [registry] }),
    workerStartFailures: new Counter({ name: "hodei_worker_start_failures_total", help: "Worker starts that failed", labelNames: ["provider"], registers: [registry] }),
    workersDestroyed: new Counter({ name: "hodei_workers_destroyed_total", help: "Workers destroyed", labelNames: ["provider"], registers: [registry] }),
    destroyFailures: new Counter({ name: "hodei_worker_destroy_failures_total", help: "Failed destroy attempts (retried)", labelNames: ["provider"], registers: [registry] }),
    attemptsLost: new Counter({ name: "hodei_attempts_lost_total", help: "Attempts lost to worker failures", labelNames: ["provider", "cause"], registers: [registry] }),
    orphansDetected: new Counter({ name: "hodei_orphans_detected_total", help: "Labelled resources with no live worker", labelNames: ["provider"], registers: [registry] }),
    orphansReaped: new Counter({ name: "hodei_orphans_reaped_total", help: "Orphans destroyed", labelNames: ["provider"], registers: [registry] }),
    liveWorkers: new Gauge({ name: "hodei_live_workers", help: "Workers not yet destroyed (exported by the leader replica only)", labelNames: ["provider"], registers: [registry] }),
    webhookDeliveries: new Counter({ name: "hodei_webhook_deliveries_total", help: "Webhook requests by result: delivered (2xx), retried (failed, tried again later), failed (given up)", labelNames: ["result"], registers: [registry] }),
    leader: new Gauge({ name: "hodei_leader", help: "1 on the replica that holds the leader lease, else 0", registers: [registry] }),
    startupSeconds: new Histogram({
      name: "hodei_worker_startup_seconds",
      help: "From job claim to the agent's registration",
      labelNames: ["provider"],
      buckets: [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
