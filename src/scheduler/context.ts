/**
 * What every reconcile step is given: the store, the providers, the clock and the settings, plus
 * the little in-memory state a pass needs (which provider calls are in flight in this process).
 * Memory is only a cache here: a restart loses it and the next pass converges from the database.
 */
import type { Logger } from "pino";
import type { Random } from "../core/backoff.js";
import type { Clock } from "../core/clock.js";
import type { Metrics } from "../metrics.js";
import type { WorkerProvider } from "../providers/provider.js";
import type { WorkerState } from "../core/worker-state.js";
import type { WorkerRow } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { JobTrace } from "./job-trace.js";
import type { Leadership, ReplicaIdentity } from "./leadership.js";
import type { Liveness } from "./liveness.js";
import type { ProviderCalls } from "./provider-calls.js";
import type { ProviderHealth } from "./provider-health.js";
import type { WebhookSettings } from "./webhooks.js";

export interface ProviderSlot {
  provider: WorkerProvider;
  maxWorkers: number;
  /** The address this provider's workers use to reach the control plane. */
  workerServerUrl: string;
  /**
   * A worker its provider reports as waiting for something outside it (an unschedulable pod) may
   * wait this long, in present time, before its attempt fails with the provider's message, ms.
   * 0 or unset: as long as the job itself allows (its queue timeout, a cancel).
   */
  pendingTimeoutMs?: number;
}

/** How the control plane reaches agents connected to this process (the worker service's streams). */
export interface AgentChannel {
  /** Asks a connected agent to stop its job; false when the agent is not connected here. */
  cancel(workerId: string, reason: string, graceMs: number): boolean;
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
  agents: AgentChannel;
  /** Finished jobs are removed this long after they finished (retention.ts). Default 0: kept forever. */
  retentionMs?: number;
  /** The retry backoff's jitter (core/backoff.ts), numbers in [0, 1). Default Math.random; tests fix it. */
  random?: Random;
  /** This replica's id and node. Default: a random id on node "default" (one control plane). */
  replica?: ReplicaIdentity;
  /** Length of the leader lease, ms (HODEI_LEADER_LEASE_MS). Default 15000. */
  leaderLeaseMs?: number;
  /** A schedule's tick seen later than this after its time was missed (core/schedule.ts), ms. Default 30 s. */
  scheduleGraceMs?: number;
  /** Jobs claimed at most per claim statement for one provider (bounded by its capacity too). Default 32. */
  claimBatch?: number;
  /** Job traces (job-trace.ts). Default: off. */
  trace?: JobTrace;
  /** Webhooks of jobs' ends (webhooks.ts). Default: unsigned, public addresses only. */
  webhooks?: WebhookSettings;
}

export interface ReconcileContext extends ReconcilerOptions {
  /**
   * Worker ids whose stop() is in flight in this process. Kept in memory only: destroys run on one
   * process at a time (the leader; for a node-bound provider, the replicas of the worker's node),
   * and a second stop after a change of leader is harmless (stop is idempotent).
   */
  readonly destroying: Set<string>;
  /** Orphans (`provider/resourceId`) whose stop is in flight in this process, off the pass (reap.ts). */
  readonly reaping: Set<string>;
  /** Worker ids to inspect on the next pass (their stream closed, their process exited). */
  readonly suspects: Set<string>;
  /**
   * Worker ids the destroy step passed over because their start was in flight here: the end of
   * that start runs a pass at once for them (a clean start runs none, see provision.ts).
   */
  readonly destroyAfterStart: Set<string>;
  readonly health: ProviderHealth;
  /** Every provider call goes through here: bounded concurrency, time limits that abort. */
  readonly calls: ProviderCalls;
  /** The control plane's own absences (before it started, frozen): never held against workers. */
  readonly liveness: Liveness;
  /** This replica's identity and the leader lease. */
  readonly leadership: Leadership;
  /** Job traces: spans of the phases this process ends (job-trace.ts); a no-op when tracing is off. */
  readonly trace: JobTrace;
  /** Runs a task off the pass; its failure is logged, never thrown. */
  inBackground(what: string, task: () => Promise<void>): void;
  /** Asks for another pass soon. */
  nudge(): void;
}

/** Margin past a job's timeout before the control plane enforces it itself (the agent should first). */
export const TIMEOUT_BACKSTOP_MS = 10_000;
/** Time an agent gets to flush and report after a cancel, past the stop grace. */
export const CANCEL_FLUSH_MS = 3_000;

/** How long a worker whose job ended may still flush its logs and report, before it is destroyed. */
export function flushWindowMs(ctx: { stopGraceMs: number }): number {
  return ctx.stopGraceMs + CANCEL_FLUSH_MS;
}

/** The stop deadline of a worker whose job ends at nowMs. */
export function stopDeadlineMs(ctx: { stopGraceMs: number }, nowMs: number): number {
  return nowMs + flushWindowMs(ctx);
}
/** A provider call (health, inspect, list) that takes longer is treated as the provider being down. */
export const PROVIDER_CALL_MS = 10_000;
/** Rows read per page when a step walks every worker of some states: memory stays bounded. */
export const PAGE_SIZE = 500;

/** Time limit of a stop: the grace the worker gets, plus the provider's own work (a pod's deletion). */
export function stopCallMs(ctx: { stopGraceMs: number }): number {
  return ctx.stopGraceMs + 45_000;
}

/** Every worker in `states`, read a page at a time. */
export async function* eachWorker(ctx: { store: Store }, states: readonly WorkerState[]): AsyncGenerator<WorkerRow> {
  let afterId = "";
  for (;;) {
    const page = await ctx.store.workers.listPage(states, afterId, PAGE_SIZE);
    yield* page;
    if (page.length < PAGE_SIZE) return;
    afterId = page[page.length - 1].id;
  }
}

/** Margin past the start's own time limit (the registration timeout) before a start in flight is no longer trusted, ms. */
export const START_MARGIN_MS = 10_000;

/**
 * True while the worker's provider start() is in flight on some replica (recorded on its row) and
 * its start deadline has not passed in present time: a replica that died mid-start is not trusted
 * for ever.
 */
export function isStartInFlight(ctx: { liveness: Liveness }, worker: WorkerRow): boolean {
  if (worker.start_owner === null || worker.start_deadline_ms === null) return false;
  return !ctx.liveness.isOverdue(worker.created_at, worker.start_deadline_ms - worker.created_at);
}

/** True when the worker's provider is bound to a node (local processes): only that node's replicas can see it. */
export function isNodeBound(ctx: { providers: Map<string, ProviderSlot> }, worker: WorkerRow): boolean {
  return ctx.providers.get(worker.provider)?.provider.isNodeBound === true;
}

/**
 * Whether this replica looks after the worker (inspects, destroys it): a node-bound worker belongs
 * to the replicas of its node, whoever leads (a row from before replicas, with no node, to anyone:
 * one machine ran everything then); any other worker to the leader.
 */
export function isInMyCare(ctx: ReconcileContext, worker: WorkerRow, isLeader: boolean): boolean {
  if (isNodeBound(ctx, worker)) return worker.node_id === null || worker.node_id === ctx.leadership.identity.nodeId;
  return isLeader;
}
