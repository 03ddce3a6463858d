/**
 * What every reconcile step is given: the store, the providers, the clock and the settings, plus
 * the little in-memory state a pass needs (which provider calls are in flight in this process).
 * Memory is only a cache here: a restart loses it and the next pass converges from the database.
 */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { Metrics } from "../metrics.js";
import type { WorkerProvider } from "../providers/provider.js";
import type { Store } from "../store/store.js";
import type { ProviderHealth } from "./provider-health.js";

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
  /** Finished jobs are removed this long after they finished (retention.ts). Default 0: kept forever. */
  retentionMs?: number;
}

export interface ReconcileContext extends ReconcilerOptions {
  /** Worker ids whose start() is in flight in this process. */
  readonly provisioning: Set<string>;
  /** Worker ids whose stop() is in flight in this process. */
  readonly destroying: Set<string>;
  /** Worker ids to inspect on the next pass (their stream closed, their process exited). */
  readonly suspects: Set<string>;
  readonly health: ProviderHealth;
  /** When this control plane started: heartbeat deadlines count from here after a restart. */
  readonly startedAtMs: number;
  /** Runs a task off the pass; its failure is logged, never thrown. */
  inBackground(what: string, task: () => Promise<void>): void;
  /** Asks for another pass soon. */
  nudge(): void;
}

/** Margin past a job's timeout before the control plane enforces it itself (the agent should first). */
export const TIMEOUT_BACKSTOP_MS = 10_000;
/** Time an agent gets to flush and report after a cancel, past the stop grace. */
export const CANCEL_FLUSH_MS = 3_000;
/** A provider call (health, inspect, list) that takes longer is treated as the provider being down. */
export const PROVIDER_CALL_MS = 10_000;
