/**
 * The reconcile loop: the one place that moves work forward and repairs the difference between
 * the database and what the providers really run. Level-triggered: every pass re-reads the state;
 * events (a submit, an agent's exit, a result) only nudge it to run sooner. Each step is idempotent,
 * so a pass may be interrupted at any line and the next one converges.
 *
 * One pass (each step in its own module; `runSteps` below runs them in this order):
 *   0. leader lease      acquire or renew the lease (leadership.ts); "leader" below means it is held
 *   1. queue deadlines   leader: jobs that never started within their queue timeout end timed_out
 *   2. schedules         leader: the due ticks of every schedule fire their jobs (schedules.ts); a
 *                        timer wakes the pass at the next tick
 *   3. provision         claim due queued jobs (highest priority first) while providers have
 *                        capacity; start their workers
 *   4. destroy           stop and remove every worker in `destroying`, retried until it succeeds
 *   5. deadlines         leader: registration deadline, heartbeat lapse, timeout backstop, workers of
 *                        ended jobs (nudged passes: at most every 250 ms)
 *   6. inspect           ask providers about live workers; an exited or missing one loses its attempt
 *   7. reap              full passes: labelled resources with no live worker row are destroyed after
 *                        a grace period
 *   8. nodes             full passes, leader: local workers of a node with no live replica are lost
 *   9. retention         full passes, leader: finished jobs older than the retention are removed
 *  10. webhooks          leader: due webhook deliveries of jobs' ends are sent, off the pass
 *                        (webhooks.ts; nudged passes: at most every 250 ms)
 *
 * A step that fails (the database is locked, a provider does not answer) is logged and the pass
 * goes on with the next step; the next pass retries it. Nothing here may end the process.
 *
 * Several replicas on one database (leadership.ts): every replica provisions; the steps that must
 * run once (queue deadlines, schedules, deadlines, reap and inspect of workers not bound to a node,
 * the dead nodes check, retention, webhooks) run on the leader only, each after checking the lease is still held (a
 * frozen leader does not act on a lease it may have lost). Workers of a node-bound provider (local)
 * are inspected, destroyed and reaped by the replicas of their node. The gauges counted from the
 * database are read when /metrics is scraped, on the leader only (metrics.ts); passes and steps
 * are timed and failed steps counted here.
 */
import { toError } from "../core/errors.js";
import { newId } from "../core/ids.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { type CommandEnding, type LossKind, loseAttempt } from "./attempt-loss.js";
import { cancelJob } from "./cancel.js";
import type { ReconcileContext, ReconcilerOptions } from "./context.js";
import { enforceDeadlines } from "./deadlines.js";
import { destroyWorkers } from "./destroy.js";
import { inspectWorkers } from "./inspect.js";
import { type JobTrace, NO_JOB_TRACE } from "./job-trace.js";
import { DEFAULT_LEADER_LEASE_MS, Leadership } from "./leadership.js";
import { Liveness } from "./liveness.js";
import { refreshScrapeGauges, timeReconcileStep } from "./metrics.js";
import { loseWorkersOfDeadNodes } from "./nodes.js";
import { PROVIDER_CONCURRENCY, ProviderCalls } from "./provider-calls.js";
import { ProviderHealth } from "./provider-health.js";
import { provision } from "./provision.js";
import { expireQueueDeadlines } from "./queue-deadlines.js";
import { reapOrphans } from "./reap.js";
import { removeExpiredJobs } from "./retention.js";
import { WebhookDispatcher } from "./webhooks.js";
import { fireDueSchedules } from "./schedules.js";

export type { AgentChannel, ProviderSlot, ReconcilerOptions } from "./context.js";
export type { LossKind } from "../core/backoff.js";
export type { CommandEnding } from "./attempt-loss.js";

/**
 * A nudged pass (a submit, a result) runs every step that moves work forward, but the `deadlines`
 * step, whose deadlines are seconds long, at most this often: under load nudged passes follow each
 * other closely, and each would read every active worker and its job again. Timer passes (full)
 * and passes run directly (runOnce) always run it. ms.
 */
const NUDGED_DEADLINES_EVERY_MS = 250;
/** The same for the webhook step on nudged passes (one indexed read of the due deliveries), ms. */
const NUDGED_WEBHOOKS_EVERY_MS = 250;

export class Reconciler {
  private readonly ctx: ReconcileContext;
  private readonly background = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true; // until start(): a reconciler that was never started (tests) runs passes only when told
  private lastFullPassMs = 0;
  private unsubscribe: () => void = () => {};
  private lastDeadlinesMs = -Infinity;
  private lastWebhooksMs = -Infinity;
  /** Sends webhook deliveries (the leader's step). */
  readonly webhooks: WebhookDispatcher;
  private cancelScheduleWake: () => void = () => {};
  /**
   * The earliest next tick of any schedule as last read (a cache: -Infinity when unknown). Nudged
   * passes skip the schedules step before it, so the passes of every submit cost no statement for
   * schedules; full passes always run it (a schedule changed on another replica is seen there).
   */
  private scheduleDueMs = -Infinity;
  /** At most this long between wake-ups for a schedule's tick (the timer passes run anyway), ms. */
  private static readonly MAX_WAKE_MS = 60_000;

  constructor(private readonly o: ReconcilerOptions) {
    const health = new ProviderHealth(o.providers, o.clock, o.log, o.metrics);
    const liveness = new Liveness(o.clock, o.log);
    const leadership = new Leadership(o.replica ?? { replicaId: newId(), nodeId: "default" }, {
      store: o.store,
      clock: o.clock,
      liveness,
      log: o.log,
      leaseMs: o.leaderLeaseMs ?? DEFAULT_LEADER_LEASE_MS,
      onChange: (isLeader) => o.metrics.leader.set(isLeader ? 1 : 0),
    });
    const trace = o.trace ?? NO_JOB_TRACE;
    this.webhooks = new WebhookDispatcher({
      store: o.store,
      clock: o.clock,
      log: o.log,
      metrics: o.metrics,
      random: o.random ?? Math.random,
      settings: o.webhooks ?? { secret: "", isPrivateAllowed: false },
    });
    this.ctx = {
      ...o,
      trace,
      destroying: new Set(),
      reaping: new Set(),
      suspects: new Set(),
      destroyAfterStart: new Set(),
      health,
      calls: new ProviderCalls(health, o.clock, PROVIDER_CONCURRENCY, o.metrics, trace),
      liveness,
      leadership,
      inBackground: (what, task) => this.inBackground(what, task),
      nudge: () => this.nudge(),
    };
    // The database gauges (queue depth, workers by state) are read when scraped, on the leader only.
    o.metrics.onScrape(() => refreshScrapeGauges(this.ctx));
  }

  start(): void {
    this.stopped = false;
    // A "reconcile" hint from another replica (a submit, a cancel) runs a pass now; this process's
    // own come back too, but whoever sent them nudged this pass already (Store.hintOrigin).
    this.unsubscribe = this.o.store.notifier.subscribe("reconcile", (origin) => {
      if (origin !== this.o.store.hintOrigin) this.nudge();
    });
    this.ctx.liveness.start();
    this.ctx.leadership.start();
    this.nudge();
    this.timer = setInterval(() => this.nudge(), this.o.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Waits for the current pass and in-flight provider calls; no new pass starts. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    this.ctx.liveness.stop();
    this.ctx.leadership.stop();
    this.cancelScheduleWake();
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.allSettled([...this.background]);
    await this.webhooks.stop();
  }

  /** Graceful shutdown of a replica, after stop(): the lease goes at once, so another leads without waiting for its expiry. */
  async releaseLeadership(): Promise<void> {
    await this.ctx.leadership.release();
  }

  /** This replica's identity and lease (the server logs it; tests drive it). */
  get leadership(): Leadership {
    return this.ctx.leadership;
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
        // The nudger's own answer (a submit's) goes out first, and nudges of this moment share the pass.
        await new Promise((resolve) => setImmediate(resolve));
        while (!this.stopped) {
          this.again = false;
          await this.runOnce({ isNudged: true });
          if (!this.again) break;
        }
      } catch (err) {
        this.o.log.error({ err: toError(err) }, "reconcile pass failed");
      } finally {
        this.running = null;
      }
    })();
  }

  /** Marks a worker to be inspected on the next pass (its stream closed, its process exited). */
  suspect(workerId: string): void {
    this.ctx.suspects.add(workerId);
    this.nudge();
  }

  /** One whole pass. Tests call it directly. isNudged: run by nudge() (see NUDGED_DEADLINES_EVERY_MS). */
  async runOnce(options: { isNudged?: boolean } = {}): Promise<void> {
    const startMs = this.o.clock.nowMs();
    try {
      await this.runSteps(options);
    } finally {
      this.o.metrics.reconcilePassSeconds.observe(Math.max(0, this.o.clock.nowMs() - startMs) / 1000);
    }
  }

  private async runSteps(options: { isNudged?: boolean }): Promise<void> {
    // After a freeze this pass may run before the liveness timer: see the absence first.
    this.ctx.liveness.beat();
    const now = this.o.clock.nowMs();
    const full = now - this.lastFullPassMs >= this.o.reconcileIntervalMs;
    if (full) this.lastFullPassMs = now;
    const { leadership } = this.ctx;
    await this.step("leader lease", async () => void (await leadership.ensure()));
    // Each leader step asks again: the lease is checked (and a freeze seen) right before acting.
    const lead = () => leadership.isLeader();
    // Queue deadlines before provision: a job past its queue timeout ends, it is not claimed.
    if (lead()) await this.step("queue deadlines", () => expireQueueDeadlines(this.ctx));
    if (lead() && (full || now >= this.scheduleDueMs)) await this.step("schedules", async () => this.wakeForSchedules(await fireDueSchedules(this.ctx)));
    // Provision before destroy: a submitted job's claim is what its user waits on (a finished
    // job's result is already theirs: destroy runs after it, off their path). Its destroys start
    // off the pass either way; a worker being destroyed still counts against capacity until gone.
    await this.step("provision", () => provision(this.ctx));
    await this.step("destroy", () => destroyWorkers(this.ctx, lead()));
    if (lead() && (!options.isNudged || full || now - this.lastDeadlinesMs >= NUDGED_DEADLINES_EVERY_MS)) {
      this.lastDeadlinesMs = now;
      await this.step("deadlines", () => enforceDeadlines(this.ctx));
    }
    await this.step("inspect", () => inspectWorkers(this.ctx, full, lead()));
    if (full) await this.step("reap", () => reapOrphans(this.ctx, lead()));
    if (full && lead()) await this.step("nodes", () => loseWorkersOfDeadNodes(this.ctx));
    if (full && lead()) await this.step("retention", async () => void (await removeExpiredJobs(this.ctx)));
    if (lead() && (!options.isNudged || full || now - this.lastWebhooksMs >= NUDGED_WEBHOOKS_EVERY_MS)) {
      this.lastWebhooksMs = now;
      await this.step("webhooks", async () => void (await this.webhooks.runOnce()));
    }
  }

  /** A schedule was created or resumed here: the next pass reads the schedules again. */
  schedulesChanged(): void {
    this.scheduleDueMs = -Infinity;
    this.nudge();
  }

  /** Runs a pass at the next tick of a schedule, so ticks fire on time rather than at the next timer pass. */
  private wakeForSchedules(nextDueAtMs: number | null): void {
    this.scheduleDueMs = nextDueAtMs ?? Infinity;
    this.cancelScheduleWake();
    if (nextDueAtMs === null || this.stopped) return;
    // A tick still due after the step (its schedule failed: logged) is retried a second later, not in a loop.
    const delayMs = Math.min(Math.max(1000, nextDueAtMs - this.o.clock.nowMs()), Reconciler.MAX_WAKE_MS);
    this.cancelScheduleWake = this.o.clock.setTimer(delayMs, () => this.nudge());
  }

  /** Resolves when every background provider call started so far has settled (tests). */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Job traces; the worker and job services record their phases with it too. */
  get trace(): JobTrace {
    return this.ctx.trace;
  }

  /** The control plane's own absences; the worker service judges token expiry with it too. */
  get liveness(): Liveness {
    return this.ctx.liveness;
  }

  /** Cancels a job in any state before its end; null when it had already ended. */
  async cancelJob(jobId: string, reason: string): Promise<JobRow | null> {
    return cancelJob(this.ctx, jobId, reason);
  }

  /**
   * An attempt lost or failed outside the reconcile pass (the worker service hears of it: an
   * interrupted agent, an exit code the job retries): retry or fail.
   */
  async loseAttempt(worker: WorkerRow, reason: string, cause: string, kind: LossKind, ending?: CommandEnding): Promise<void> {
    await loseAttempt(this.ctx, worker, reason, cause, kind, ending);
  }

  private async step(name: string, run: () => Promise<void>): Promise<void> {
    try {
      await timeReconcileStep(this.o.metrics, this.o.clock, name, run);
    } catch (err) {
      this.o.log.error({ err: toError(err), step: name }, "reconcile step failed; the next pass retries it");
    }
  }

  private inBackground(what: string, task: () => Promise<void>): void {
    const running = task().catch((err: unknown) => {
      this.o.log.error({ err: toError(err), task: what }, "background task failed; the next pass retries it");
    });
    this.background.add(running);
    void running.finally(() => this.background.delete(running));
  }
}
