/**
 * Makes failed Register calls expensive for the address that sends them, and only for it.
 *
 * A Register is never refused before its token is checked: every local worker, and every Docker
 * worker on host networking, shares 127.0.0.1 with whatever else runs on the host, so limiting an
 * address before the check would let anyone there stop legitimate workers from registering. The
 * check is cheap (one indexed lookup), a valid token registers at once, and only a refusal passes
 * through here:
 * - the first `freeFailures` refusals of an address in a window are answered at once (an agent
 *   whose token expired is no attacker);
 * - each further one is answered after a delay that starts at `baseDelayMs` and doubles with every
 *   failure, up to `maxDelayMs`;
 * - at most `maxPendingPerAddress` refusals of one address wait at once; beyond that a failure is
 *   answered at once with resource_exhausted, so an address cannot make the server hold an
 *   unbounded number of calls.
 *
 * Each address is logged at warn once per window, when the window ends, with its count: a burst of
 * 2,000 wrong tokens is one line, not 2,000.
 *
 * Invariants: memory is bounded. At most `maxAddresses` addresses are tracked (beyond that the
 * oldest window is forgotten, and how many were is logged once per window); an address's entry
 * goes when its window ends with nothing of it waiting; at most `maxPendingPerAddress` timers per
 * tracked address (the calls themselves are bounded by the listener's connection and stream
 * limits, also for forgotten addresses). Entries sit in the map in the order their windows started, so the ones whose
 * window ended are always at its front. All time comes from the injected clock.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";

/** Thresholds; config.ts (HODEI_REGISTER_*) documents each default. */
export interface RegisterLimits {
  /** Refusals per address and window answered at once. */
  freeFailures: number;
  /** Delay of the first delayed refusal, ms; it doubles with each further failure. */
  baseDelayMs: number;
  /** The longest delay, ms. */
  maxDelayMs: number;
  /** Failures are counted, and logged, per window of this length, ms. */
  windowMs: number;
  /** Delayed refusals of one address waiting at once. */
  maxPendingPerAddress: number;
  /** Addresses tracked at once. */
  maxAddresses: number;
}

interface Entry {
  address: string;
  windowStartMs: number;
  failures: number;
  /** Refusals answered after a delay in this window. */
  delayed: number;
  /** Refusals answered resource_exhausted in this window. */
  exhausted: number;
  /** Delayed refusals of this address waiting now (each one's answer). */
  pending: Set<() => void>;
}

export class RegisterLimiter {
  private readonly entries = new Map<string, Entry>();
  /** Every refusal waiting now, also of addresses since forgotten: close() answers them all. */
  private readonly waiting = new Set<() => void>();
  /** Addresses dropped because maxAddresses were tracked, since the last log line about it. */
  private forgotten = 0;
  private cancelSweep: (() => void) | null = null;
  private sweepAtMs = 0;
  private closed = false;

  constructor(
    private readonly limits: RegisterLimits,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * Called once a Register from `address` was refused for its token, before the refusal is
   * answered: resolves when it may be answered; throws resource_exhausted when the address already
   * has its maximum of refusals waiting.
   */
  async refuse(address: string): Promise<void> {
    if (this.closed) return;
    const entry = this.entryFor(address);
    entry.failures++;
    const delayMs = this.delayMs(entry.failures);
    if (delayMs === 0) return;
    if (entry.pending.size >= this.limits.maxPendingPerAddress) {
      entry.exhausted++;
      // A ConnectError, which the error interceptor passes on as it is: core/errors.ts has no
      // resource-exhausted error, and this is the only place that answers one.
      throw new ConnectError("too many failed Register calls from this address are waiting for their answer; slow down", Code.ResourceExhausted);
    }
    entry.delayed++;
    await new Promise<void>((resolve) => {
      const answer = () => {
        entry.pending.delete(answer);
        this.waiting.delete(answer);
        cancel();
        resolve();
      };
      const cancel = this.clock.setTimer(delayMs, answer);
      entry.pending.add(answer);
      this.waiting.add(answer);
    });
  }

  /** Delay before the `failures`th refusal of a window is answered, ms (0: at once). */
  delayMs(failures: number): number {
    const over = failures - this.limits.freeFailures;
    if (over <= 0) return 0;
    return Math.min(this.limits.maxDelayMs, this.limits.baseDelayMs * 2 ** Math.min(over - 1, 30));
  }

  /** Addresses tracked now. */
  get addressCount(): number {
    return this.entries.size;
  }

  /** Refusals of `address` waiting for their answer now. */
  pendingRefusals(address: string): number {
    return this.entries.get(address)?.pending.size ?? 0;
  }

  /** Answers every waiting refusal at once, logs the windows in progress and stops the timer. */
  close(): void {
    this.closed = true;
    this.cancelSweep?.();
    this.cancelSweep = null;
    for (const answer of [...this.waiting]) answer();
    for (const entry of this.entries.values()) this.report(entry);
    this.entries.clear();
    this.reportForgotten();
  }

  private entryFor(address: string): Entry {
    const now = this.clock.nowMs();
    let entry = this.entries.get(address);
    if (entry && now - entry.windowStartMs >= this.limits.windowMs) {
      // Its window ended before the sweep ran (they run on the same clock, so only just): close it here.
      this.endWindow(entry, now);
      entry = this.entries.get(address);
    }
    if (!entry) {
      if (this.entries.size >= this.limits.maxAddresses) {
        const oldest = this.entries.keys().next().value as string;
        this.entries.delete(oldest);
        this.forgotten++;
      }
      entry = { address, windowStartMs: now, failures: 0, delayed: 0, exhausted: 0, pending: new Set() };
      this.entries.set(address, entry);
    }
    this.armSweep();
    return entry;
  }

  /** Logs the entry's window and forgets it, or, with refusals still waiting, starts a new window. */
  private endWindow(entry: Entry, now: number): void {
    this.report(entry);
    this.entries.delete(entry.address);
    if (entry.pending.size === 0) return;
    Object.assign(entry, { windowStartMs: now, failures: 0, delayed: 0, exhausted: 0 });
    this.entries.set(entry.address, entry); // to the back: the map stays in window order
  }

  private report(entry: Entry): void {
    if (entry.failures === 0) return;
    this.log.warn(
      {
        clientAddress: entry.address || "unknown",
        failures: entry.failures,
        delayed: entry.delayed,
        exhausted: entry.exhausted,
        windowMs: this.limits.windowMs,
      },
      "register calls refused for their OTP token from one address",
    );
  }

  private reportForgotten(): void {
    if (this.forgotten === 0) return;
    this.log.warn(
      { forgottenAddresses: this.forgotten, maxAddresses: this.limits.maxAddresses },
      "register calls refused from more addresses than are tracked; the oldest were forgotten (HODEI_REGISTER_MAX_ADDRESSES)",
    );
    this.forgotten = 0;
  }

  /** One timer, at the end of the oldest window. */
  private armSweep(): void {
    const oldest = this.entries.values().next().value as Entry | undefined;
    if (!oldest || this.closed) return;
    const atMs = oldest.windowStartMs + this.limits.windowMs;
    if (this.cancelSweep && this.sweepAtMs <= atMs) return;
    this.cancelSweep?.();
    this.sweepAtMs = atMs;
    this.cancelSweep = this.clock.setTimer(Math.max(0, atMs - this.clock.nowMs()), () => this.sweep());
  }

  private sweep(): void {
    this.cancelSweep = null;
    const now = this.clock.nowMs();
    for (const entry of [...this.entries.values()]) {
      if (now - entry.windowStartMs < this.limits.windowMs) break; // the rest started later
      this.endWindow(entry, now);
    }
    this.reportForgotten();
    this.armSweep();
  }
}
