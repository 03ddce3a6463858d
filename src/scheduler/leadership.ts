/**
 * This replica among several control planes on one database: its identity (a random replica id
 * per process start, and the node, HODEI_NODE_ID, it runs on), its presence row, and the leader
 * lease.
 *
 * The leader runs the steps that must run once (deadlines, destroy, reap, retention, queue
 * deadlines, inspect of workers not bound to a node, the database gauges of /metrics); every replica
 * provisions. The lease is a row in the database, acquired or renewed by one guarded statement
 * (store/replicas.ts) at least every third of its length; a replica that is not the leader tries
 * to acquire it as often, so it takes over within a third of a lease after the holder's lease
 * expired (at most one lease plus a third after the holder died). Sooner when the holder ran on
 * this node and its process is provably gone (process-key.ts): a server restarted after a crash, or
 * a replica beside one that died, takes the lease at once, by a statement guarded by holder and epoch.
 *
 * Invariants:
 * - no two leaders at once: a replica counts itself leader only until the expiry it wrote, measured
 *   from *before* the statement that wrote it was sent (its own clock; replicas' clocks must agree
 *   to well within a lease, as NTP keeps them), and another can acquire only after that expiry;
 * - a frozen replica does not act on a lease it may have lost: isLeader() first beats the liveness
 *   clock (liveness.ts); any absence (SIGSTOP, a paused VM, a long event-loop block) since the
 *   last renewal makes it not the leader until it has renewed again in the database. A freeze
 *   between that check and one statement remains possible; every leader step counts present time
 *   and writes through guarded statements, so such a late statement repeats work (a second stop
 *   of a worker, which is idempotent) but never judges a worker by the time it was frozen.
 */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { toError } from "../core/errors.js";
import type { Store } from "../store/store.js";
import type { LeaseRow } from "../store/schema.js";
import type { Liveness } from "./liveness.js";
import { isProcessGone as isProcessGoneOnThisMachine } from "./process-key.js";

/** The lease's name in the leases table. */
export const LEADER_LEASE = "leader";
/** Default length of the leader lease, ms (HODEI_LEADER_LEASE_MS). */
export const DEFAULT_LEADER_LEASE_MS = 15_000;

export interface ReplicaIdentity {
  /** Random per process start. */
  replicaId: string;
  /** The machine it runs on (HODEI_NODE_ID, default the hostname): local workers belong to it. */
  nodeId: string;
  /** Its process (process-key.ts), recorded with its presence; null or absent where unknown. */
  processKey?: string | null;
}

export class Leadership {
  private heldUntilMs = 0;
  private renewedFromMs = 0;
  private epoch = 0;
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<boolean> | null = null;
  private isReleased = false;

  constructor(
    readonly identity: ReplicaIdentity,
    private readonly o: {
      store: Store;
      clock: Clock;
      liveness: Liveness;
      log: Logger;
      leaseMs: number;
      onChange?: (isLeader: boolean) => void;
      /** Whether the process of a process key is known to be gone (process-key.ts; tests replace it). */
      isProcessGone?: (processKey: string) => boolean;
    },
  ) {}

  get leaseMs(): number {
    return this.o.leaseMs;
  }

  /** Renews on a timer (every third of the lease), so a long pass does not let the lease lapse. */
  start(): void {
    this.timer ??= setInterval(() => void this.renew(), Math.max(1, Math.floor(this.o.leaseMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * True while this replica holds the lease and may act as leader now: the expiry it wrote has not
   * passed, and it has not been absent (frozen) since it last renewed.
   */
  isLeader(): boolean {
    if (this.heldUntilMs === 0) return false;
    this.o.liveness.beat();
    const now = this.o.clock.nowMs();
    return now < this.heldUntilMs && this.o.liveness.absentMs(this.renewedFromMs, now) === 0;
  }

  /** Renews when a third of the lease has passed since the last renewal, or after an absence; returns isLeader(). */
  async ensure(): Promise<boolean> {
    this.o.liveness.beat();
    const now = this.o.clock.nowMs();
    const isDue = now - this.renewedFromMs >= this.o.leaseMs / 3 || this.o.liveness.absentMs(this.renewedFromMs, now) > 0 || this.heldUntilMs === 0;
    if (isDue) await this.renew();
    return this.isLeader();
  }

  /**
   * One renewal: the presence row, then the lease (acquired if free or expired, renewed if held).
   * Concurrent calls share one round. A failure (the database is locked) counts as not leader.
   */
  renew(): Promise<boolean> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = null));
    return this.renewing;
  }

  private async renewOnce(): Promise<boolean> {
    if (this.isReleased) return false;
    const wasLeader = this.heldUntilMs > 0;
    this.o.liveness.beat();
    const from = this.o.clock.nowMs();
    const { replicaId, nodeId } = this.identity;
    try {
      await this.o.store.replicas.renewPresence(replicaId, nodeId, from, this.identity.processKey ?? null);
      const row = (await this.o.store.replicas.acquireLease(LEADER_LEASE, replicaId, from, from + this.o.leaseMs)) ?? (await this.takeOverFromGoneHolder(from));
      if (row && !this.isReleased) {
        if (!wasLeader || row.epoch !== this.epoch) this.o.log.info({ replicaId, nodeId, epoch: row.epoch }, "this replica is the leader");
        this.epoch = row.epoch;
        this.heldUntilMs = from + this.o.leaseMs;
        this.renewedFromMs = from;
      } else {
        this.lose();
      }
    } catch (err) {
      this.o.log.warn({ err: toError(err), replicaId }, "could not renew the leader lease or presence; not acting as leader until it is renewed");
      this.lose();
    }
    if (wasLeader !== this.heldUntilMs > 0) this.o.onChange?.(this.heldUntilMs > 0);
    return this.isLeader();
  }

  /**
   * The lease is held and not expired: when its holder is a replica of this node whose process is
   * known to be gone (the same machine's boot and PID namespace: process-key.ts), takes it over now
   * rather than after its expiry. Anything less than proof leaves it to expire.
   */
  private async takeOverFromGoneHolder(from: number): Promise<LeaseRow | null> {
    // Without a key of its own (no /proc here) a replica can judge no process: no reads for nothing.
    if (!this.identity.processKey) return null;
    const isProcessGone = this.o.isProcessGone ?? isProcessGoneOnThisMachine;
    const lease = await this.o.store.replicas.getLease(LEADER_LEASE);
    if (!lease || lease.holder === "" || lease.holder === this.identity.replicaId || lease.expires_at_ms <= from) return null;
    const holder = await this.o.store.replicas.getPresence(lease.holder);
    if (!holder?.process_key || holder.node_id !== this.identity.nodeId || !isProcessGone(holder.process_key)) return null;
    const row = await this.o.store.replicas.takeOverLease(LEADER_LEASE, lease.holder, lease.epoch, this.identity.replicaId, from + this.o.leaseMs);
    if (row) {
      this.o.log.info({ replicaId: this.identity.replicaId, previousLeader: lease.holder, previousLeaderProcess: holder.process_key }, "the leader's process is gone from this machine: taking the lease over without waiting for it to expire");
    }
    return row;
  }

  private lose(): void {
    if (this.heldUntilMs > 0) this.o.log.warn({ replicaId: this.identity.replicaId }, "this replica is no longer the leader");
    this.heldUntilMs = 0;
  }

  /** Graceful shutdown: gives the lease up and removes the presence row, so another replica leads at once. */
  async release(): Promise<void> {
    this.stop();
    this.isReleased = true;
    await this.renewing;
    const wasLeader = this.heldUntilMs > 0;
    this.heldUntilMs = 0;
    if (wasLeader) this.o.onChange?.(false);
    await this.o.store.replicas.releaseLease(LEADER_LEASE, this.identity.replicaId);
    await this.o.store.replicas.removePresence(this.identity.replicaId);
  }
}
