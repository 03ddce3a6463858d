/**
 * The reconcile loop: the one place that moves work forward and repairs the difference between
 * the database and what the providers really run. Level-triggered: every pass re-reads the state;
 * events (a submit, an agent's exit, a result) only nudge it to run sooner. Each step is idempotent,
 * so a pass may be interrupted at any line and the next one converges.
 *
 * One pass:
 *   1. destroy    stop and remove every worker in `destroying`, retried until it succeeds
 *   2. provision  claim due queued jobs while providers have capacity; start their workers
 *   3. deadlines  registration deadline, heartbeat lapse, timeout backstop, workers of ended jobs
 *   4. vanished   inspect live workers; an exited or missing one loses its attempt
 *   5. orphans    labelled resources with no live worker row are reaped after a grace period
 */
import type { Logger } from "pino";
import { nextAfterLoss } from "../core/backoff.js";
import type { Clock } from "../core/clock.js";
import { PermanentError, toError, UnavailableError, withTimeout } from "../core/errors.js";
import { newId, workerName } from "../core/ids.js";
import { isTerminal } from "../core/job-state.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import type { Metrics } from "../metrics.js";
import type { WorkerProvider, WorkerStatus } from "../providers/provider.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import type { Store } from "../store/store.js";

export interface ProviderSlot {
  provider: WorkerProvider;
  maxWorkers: number;
  /** The address this provider's workers use to reach the control plane. */
  workerServerUrl: string;
}

export interface ReconcilerOptions {
  store: Store;
  providers: Map<string, ProviderSlot>;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  registrationTimeoutMs: number;
  heartbeatTimeoutMs: number;
  reconcileIntervalMs: number;
  orphanGraceMs: number;
  stopGraceMs: number;
}

/** Margin past a job's timeout before the control plane enforces it itself (the agent should first). */
const TIMEOUT_BACKSTOP_MS = 10_000;
/** Time an agent gets to flush and report after a cancel, past the stop grace. */
const CANCEL_FLUSH_MS = 3_000;
/** How long a provider found unavailable rests before its health is checked again. */
const PROVIDER_RETRY_MS = 5_000;
/** A provider call (health, inspect, list) that takes longer is treated as the provider being down. */
const PROVIDER_CALL_MS = 10_000;

export class Reconciler {
  private readonly provisioning = new Set<string>(); // worker ids whose start() is in flight here
  private readonly destroying = new Set<string>(); // worker ids whose stop() is in flight here
  private readonly suspects = new Set<string>(); // worker ids to inspect on the next pass
  private readonly background = new Set<Promise<void>>();
  private readonly startedAtMs: number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private lastFullPassMs = 0;

  constructor(private readonly o: ReconcilerOptions) {
    this.startedAtMs = o.clock.nowMs();
  }

  start(): void {
    this.stopped = false;
    this.nudge();
    this.timer = setInterval(() => this.nudge(), this.o.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Waits for the current pass and in-flight provider calls; no new pass starts. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.allSettled([...this.background]);
  }

  /** Asks for a pass soon. Passes never overlap; nudges during a pass cause one more. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.runOnce();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.o.log.error({ err: toError(err) }, "reconcile pass failed");
      } finally {
        this.running = null;
      }
    })();
  }

  /** Marks a worker to be inspected on the next pass (its stream closed, its process exited). */
  suspect(workerId: string): void {
    this.suspects.add(workerId);
    this.nudge();
  }

  /** One whole pass. Tests call it directly. */
  async runOnce(): Promise<void> {
    const now = this.o.clock.nowMs();
    const full = now - this.lastFullPassMs >= this.o.reconcileIntervalMs;
    if (full) this.lastFullPassMs = now;
    // Destroying first: a finished job's worker is what a user waits on.
    await this.destroyWorkers();
    await this.provision();
    await this.enforceDeadlines();
    await this.inspectWorkers(full);
    if (full) await this.reapOrphans();
  }

  /** Resolves when every background provider call started so far has settled (tests). */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  // ---- 2. provision ---------------------------------------------------------------------------

  private async provision(): Promise<void> {
    const live = await this.o.store.countLiveWorkersByProvider();
    const available = await this.availableProviders();
    const capacity = new Map<string, number>();
    for (const [name, slot] of this.o.providers) capacity.set(name, available.has(name) ? slot.maxWorkers - (live.get(name) ?? 0) : 0);
    for (const [name, slot] of this.o.providers) this.o.metrics.liveWorkers.set({ provider: name }, live.get(name) ?? 0);
    for (;;) {
      const open = [...capacity].filter(([, n]) => n > 0).map(([name]) => name);
      const now = this.o.clock.nowMs();
      let otpToken = "";
      const claimed = await this.o.store.claimJobForWorker(open, now, (job) => {
        otpToken = mintOtpToken();
        const workerId = newId();
        const deadline = now + this.o.registrationTimeoutMs;
        return {
          worker: { id: workerId, name: workerName(workerId), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: deadline },
          token: { id: newId(), tokenHash: hashToken(otpToken), expiresAtMs: deadline },
        };
      });
      if (!claimed) return;
      capacity.set(claimed.job.provider, (capacity.get(claimed.job.provider) ?? 0) - 1);
      this.o.log.info({ jobId: claimed.job.id, workerId: claimed.worker.id, attempt: claimed.job.attempts }, "job claimed");
      this.provisioning.add(claimed.worker.id);
      this.inBackground(this.startWorker(claimed.job, claimed.worker, otpToken).finally(() => this.provisioning.delete(claimed.worker.id)));
    }
  }

  private async startWorker(job: JobRow, worker: WorkerRow, otpToken: string): Promise<void> {
    const slot = this.o.providers.get(job.provider)!;
    const log = this.o.log.child({ jobId: job.id, workerId: worker.id, provider: job.provider });
    let recorded: WorkerRow | null | undefined;
    const record = async (resourceId: string, resourceType: WorkerRow["resource_type"] & string) => {
      recorded = await this.o.store.recordProvisioned(worker.id, resourceId, resourceType, this.o.clock.nowMs());
      log.info({ providerResourceId: resourceId, resourceType }, "worker created; provider_resource_id recorded on worker and OTP token");
    };
    try {
      const resource = await slot.provider.start({
        workerId: worker.id,
        name: worker.name,
        jobId: job.id,
        attempt: worker.attempt,
        otpToken,
        serverUrl: slot.workerServerUrl,
        image: job.image,
        cpuMillis: job.cpu_millis,
        memoryMb: job.memory_mb,
        deadlineSeconds: job.timeout_seconds + Math.ceil((this.o.registrationTimeoutMs + TIMEOUT_BACKSTOP_MS) / 1000) + 60,
        onCreated: (r) => record(r.resourceId, r.resourceType),
      });
      if (recorded === undefined) await record(resource.resourceId, resource.resourceType);
      this.o.metrics.workersStarted.inc({ provider: job.provider });
      if (!recorded) log.info("attempt ended while the worker started; it will be destroyed");
    } catch (err) {
      const error = toError(err);
      this.o.metrics.workerStartFailures.inc({ provider: job.provider });
      log.warn({ err: error }, "worker start failed");
      if (error instanceof UnavailableError) {
        // The provider itself is down: the job waits for it; this try does not count as an attempt.
        this.markUnhealthy(job.provider, error.message);
        await this.requeueUncounted(worker, `${job.provider} is unavailable: ${error.message}; waiting for it`);
      } else {
        await this.loseAttempt(worker, `could not start the worker on ${job.provider}: ${error.message}`, "start_failed", error instanceof PermanentError);
      }
    }
    this.nudge();
  }

  /** Puts a job back in the queue without spending one of its attempts. */
  private async requeueUncounted(worker: WorkerRow, reason: string): Promise<void> {
    const job = await this.o.store.getJob(worker.job_id);
    if (!job) return;
    const now = this.o.clock.nowMs();
    await this.o.store.endAttempt(worker, "queued", now, { not_before_ms: now + PROVIDER_RETRY_MS, reason, max_attempts: job.max_attempts + 1 }, reason);
  }

  // ---- provider health ------------------------------------------------------------------------

  /** Providers known to be down, until when their health is checked again. */
  private readonly unhealthyUntil = new Map<string, number>();

  private markUnhealthy(provider: string, detail: string): void {
    if (!this.unhealthyUntil.has(provider)) this.o.log.warn({ provider, detail }, "provider unavailable; its jobs wait queued");
    this.unhealthyUntil.set(provider, this.o.clock.nowMs() + PROVIDER_RETRY_MS);
  }

  /** Providers that may take work now: a down provider is re-checked every PROVIDER_RETRY_MS. */
  private async availableProviders(): Promise<Set<string>> {
    const available = new Set<string>();
    const now = this.o.clock.nowMs();
    for (const [name, slot] of this.o.providers) {
      const until = this.unhealthyUntil.get(name);
      if (until === undefined) {
        available.add(name);
        continue;
      }
      if (now < until) continue;
      const health = await withTimeout(slot.provider.health(), PROVIDER_CALL_MS, `${name} health`).catch((err: Error) => ({ healthy: false, detail: err.message }));
      if (health.healthy) {
        this.unhealthyUntil.delete(name);
        this.o.log.info({ provider: name }, "provider available again");
        available.add(name);
      } else {
        this.markUnhealthy(name, health.detail);
      }
    }
    return available;
  }

  // ---- 3. deadlines ---------------------------------------------------------------------------

  private async enforceDeadlines(): Promise<void> {
    const now = this.o.clock.nowMs();
    const active = await this.o.store.listWorkers(["provisioning", "waiting", "registered", "running"], 100_000);
    const jobs = await this.o.store.getJobs(active.map((w) => w.job_id));
    for (const worker of active) {
      const job = jobs.get(worker.job_id);
      if (!job) continue;
      // A worker whose job or attempt has ended (cancel, timeout) gets a short time to flush, then goes.
      if (isTerminal(job.state) || job.attempts !== worker.attempt || job.state === "queued") {
        if (worker.state === "provisioning" || worker.state === "waiting" || worker.stop_deadline_ms !== null && worker.stop_deadline_ms <= now) {
          await this.o.store.transitionWorker(worker.id, "destroying", { finished_at: now, failure_reason: worker.failure_reason || `job ${job.state}` });
        } else if (worker.stop_deadline_ms === null) {
          await this.o.store.setWorkerFields(worker.id, { stop_deadline_ms: now + this.o.stopGraceMs + CANCEL_FLUSH_MS });
        }
        continue;
      }
      if ((worker.state === "waiting" || worker.state === "provisioning") && worker.registration_deadline_ms <= now) {
        if (this.provisioning.has(worker.id)) continue; // start() still running here; judged when it returns
        const seconds = Math.round(this.o.registrationTimeoutMs / 1000);
        const output = await this.lastOutputOf(worker);
        await this.loseAttempt(
          worker,
          `the worker did not register within ${seconds}s (it could not reach the control plane at its worker-facing URL, or failed to start)${output ? `; its last output: ${output}` : ""}`,
          "registration_deadline",
        );
        continue;
      }
      if (worker.state === "registered" || worker.state === "running") {
        const lastSign = Math.max(worker.last_heartbeat_ms ?? 0, worker.registered_at ?? 0, this.startedAtMs);
        if (now - lastSign > this.o.heartbeatTimeoutMs) {
          await this.loseAttempt(worker, `no heartbeat from the worker for ${Math.round((now - lastSign) / 1000)}s; it is considered lost`, "heartbeat_lapsed");
          continue;
        }
      }
      if (worker.state === "running" && worker.started_at !== null && now > worker.started_at + job.timeout_seconds * 1000 + TIMEOUT_BACKSTOP_MS) {
        const ended = await this.o.store.endAttempt(worker, "timed_out", now, { reason: `timed out after ${job.timeout_seconds}s (enforced by the control plane)`, finished_at: now, logs_incomplete: 1 }, "timed out");
        if (ended) this.o.metrics.jobsFinished.inc({ provider: job.provider, state: "timed_out" });
      }
    }
  }

  // ---- 4. vanished workers ----------------------------------------------------------------------

  private async inspectWorkers(full: boolean): Promise<void> {
    const suspects = new Set(this.suspects);
    this.suspects.clear();
    if (!full && suspects.size === 0) return;
    const candidates = await this.o.store.listWorkers(["waiting", "registered", "running"], 100_000);
    await Promise.all(
      candidates
        .filter((w) => full || suspects.has(w.id))
        .map(async (worker) => {
          const slot = this.o.providers.get(worker.provider);
          if (!slot || !worker.provider_resource_id) return;
          let status: WorkerStatus;
          try {
            status = await withTimeout(slot.provider.inspect(worker.provider_resource_id), PROVIDER_CALL_MS, `${worker.provider} inspect`);
          } catch (err) {
            this.o.log.warn({ err: toError(err), workerId: worker.id }, "worker inspect failed");
            return;
          }
          if (status.state === "pending" || status.state === "running") return;
          const what = `${worker.name} (${worker.resource_type} ${worker.provider_resource_id})`;
          const before = worker.state === "waiting" ? "before registering" : "before reporting a result";
          let reason =
            status.state === "exited" ? `the worker ${what} ${status.reason} ${before}` : `the worker ${what} disappeared ${before}`;
          const output = await this.lastOutputOf(worker);
          if (output && worker.state === "waiting") reason += `; its last output: ${output}`;
          // Re-read: the result may have been recorded while we looked.
          const fresh = await this.o.store.getWorker(worker.id);
          if (!fresh || fresh.state === "destroying" || fresh.state === "destroyed") return;
          if (output) await this.appendSystemLog(fresh, `[hodei] ${reason}\n[hodei] the worker's last output:\n${output}\n`);
          await this.loseAttempt(fresh, reason, "vanished", status.state === "exited" && status.permanent === true);
        }),
    );
  }

  // ---- 1. destroy -----------------------------------------------------------------------------

  private async destroyWorkers(): Promise<void> {
    const doomed = await this.o.store.listWorkers(["destroying"], 100_000);
    for (const worker of doomed) {
      if (this.destroying.has(worker.id) || this.provisioning.has(worker.id)) continue;
      this.destroying.add(worker.id);
      this.inBackground(this.destroyWorker(worker).finally(() => this.destroying.delete(worker.id)));
    }
  }

  private async destroyWorker(worker: WorkerRow): Promise<void> {
    const slot = this.o.providers.get(worker.provider);
    const log = this.o.log.child({ workerId: worker.id, jobId: worker.job_id, provider: worker.provider });
    if (!slot) {
      log.warn("worker of a provider that is not enabled; cannot destroy it");
      return;
    }
    try {
      if (worker.provider_resource_id) {
        await slot.provider.stop(worker.provider_resource_id, this.o.stopGraceMs);
      } else {
        // Never learned its id (the start call failed or we crashed): find it by its labels.
        for (const resource of await slot.provider.list()) {
          if (resource.workerId === worker.id) await slot.provider.stop(resource.resourceId, this.o.stopGraceMs);
        }
      }
      const row = await this.o.store.transitionWorker(worker.id, "destroyed", { destroyed_at: this.o.clock.nowMs() });
      if (row) {
        this.o.metrics.workersDestroyed.inc({ provider: worker.provider });
        log.info({ providerResourceId: worker.provider_resource_id }, "worker destroyed");
      }
    } catch (err) {
      const error = toError(err);
      this.o.metrics.destroyFailures.inc({ provider: worker.provider });
      await this.o.store.recordDestroyFailure(worker.id, error.message);
      log.warn({ err: error }, "worker destroy failed; the next pass retries");
    }
  }

  // ---- 5. orphans -----------------------------------------------------------------------------

  private async reapOrphans(): Promise<void> {
    const now = this.o.clock.nowMs();
    for (const [name, slot] of this.o.providers) {
      let resources;
      try {
        resources = await withTimeout(slot.provider.list(), PROVIDER_CALL_MS, `${name} list`);
      } catch (err) {
        this.o.log.warn({ err: toError(err), provider: name }, "provider list failed; orphans not checked");
        continue;
      }
      for (const resource of resources) {
        if (this.provisioning.has(resource.workerId) || this.destroying.has(resource.workerId)) continue;
        const worker = await this.o.store.getWorker(resource.workerId);
        const isOwned = worker && worker.state !== "destroyed" && (worker.provider_resource_id === null || worker.provider_resource_id === resource.resourceId);
        if (isOwned) continue;
        if (now - resource.createdAtMs < this.o.orphanGraceMs) continue;
        this.o.metrics.orphansDetected.inc({ provider: name });
        this.o.log.warn({ provider: name, providerResourceId: resource.resourceId, workerId: resource.workerId }, "orphan found; destroying it");
        try {
          await slot.provider.stop(resource.resourceId, this.o.stopGraceMs);
          this.o.metrics.orphansReaped.inc({ provider: name });
        } catch (err) {
          this.o.log.warn({ err: toError(err), providerResourceId: resource.resourceId }, "orphan destroy failed; the next pass retries");
        }
      }
    }
  }

  // ---- shared -----------------------------------------------------------------------------------

  /** Adds a line of our own to the attempt's log, after whatever the agent sent. */
  private async appendSystemLog(worker: WorkerRow, text: string): Promise<void> {
    const seq = (await this.o.store.maxLogSeq(worker.job_id, worker.attempt)) + 1;
    await this.o.store.appendLogs(worker.job_id, worker.attempt, [{ seq, stream: "system", data: text, timeMs: this.o.clock.nowMs() }]);
  }

  /** The worker's last output, when its provider can tell (a capability), for failure reasons. */
  private async lastOutputOf(worker: WorkerRow): Promise<string> {
    const provider = this.o.providers.get(worker.provider)?.provider;
    if (!provider?.lastOutput || !worker.provider_resource_id) return "";
    const text = await withTimeout(provider.lastOutput(worker.provider_resource_id), PROVIDER_CALL_MS, "last output").catch(() => "");
    return text.length > 600 ? `...${text.slice(-600)}` : text;
  }

  /** An attempt lost to the infrastructure: retry it with a new worker, or fail the job. */
  async loseAttempt(worker: WorkerRow, reason: string, cause: string, permanent = false): Promise<void> {
    const job = await this.o.store.getJob(worker.job_id);
    if (!job) return;
    const now = this.o.clock.nowMs();
    const decision = nextAfterLoss(worker.attempt, job.max_attempts, permanent, now);
    this.o.metrics.attemptsLost.inc({ provider: worker.provider, cause });
    const logsIncomplete = worker.state === "running" ? 1 : job.logs_incomplete;
    if (decision.retry) {
      await this.o.store.endAttempt(worker, "queued", now, { not_before_ms: decision.notBeforeMs, reason: `attempt ${worker.attempt} lost: ${reason}; retrying` }, reason);
      this.o.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job requeued");
    } else {
      const ended = await this.o.store.endAttempt(worker, "failed", now, { reason, finished_at: now, logs_incomplete: logsIncomplete }, reason);
      if (ended) this.o.metrics.jobsFinished.inc({ provider: job.provider, state: "failed" });
      this.o.log.warn({ jobId: job.id, workerId: worker.id, reason }, "attempt lost; job failed");
    }
    this.nudge();
  }

  private inBackground(task: Promise<void>): void {
    this.background.add(task);
    void task.finally(() => this.background.delete(task));
  }
}
