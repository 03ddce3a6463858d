/**
 * /readyz's view of the database: one cheap `select 1` (Store.ping) with a short time limit, its
 * answer kept for a second so that a flood of probes costs the pool at most one statement a second,
 * and concurrent probes share the one in flight. A database that does not answer in time is unready,
 * with the reason (for the log: see onChange).
 */
import type { Clock } from "../core/clock.js";

export type Readiness = { isReady: true } | { isReady: false; reason: string };

export interface ReadinessOptions {
  /** How long an answer is reused, ms. Default 1000. */
  cacheMs?: number;
  /** How long the ping may take before the database counts as not answering, ms. Default 2000. */
  timeoutMs?: number;
  /**
   * Told when the answer changes (ready, unready, or another reason): the reason goes to the log,
   * never to the probe's answer, which anyone may ask (it may name hosts, addresses and users).
   */
  onChange?: (answer: Readiness) => void;
}

export class DatabaseReadiness {
  private last: { atMs: number; answer: Readiness } | null = null;
  private inFlight: Promise<Readiness> | null = null;
  private readonly cacheMs: number;
  private readonly timeoutMs: number;
  private readonly onChange: (answer: Readiness) => void;
  /** Why the last answer was unready ("": ready; a start counts as ready, so a first ready answer is no change). */
  private lastReason = "";

  constructor(
    private readonly ping: () => Promise<void>,
    private readonly clock: Clock,
    options: ReadinessOptions = {},
  ) {
    this.cacheMs = options.cacheMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.onChange = options.onChange ?? (() => {});
  }

  async check(): Promise<Readiness> {
    if (this.last && this.clock.nowMs() - this.last.atMs < this.cacheMs) return this.last.answer;
    this.inFlight ??= this.probe().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  private async probe(): Promise<Readiness> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    let answer: Readiness;
    try {
      await Promise.race([this.ping(), timeout]);
      answer = { isReady: true };
    } catch (err) {
      answer = { isReady: false, reason: (err as Error).message || String(err) };
    } finally {
      clearTimeout(timer);
    }
    this.last = { atMs: this.clock.nowMs(), answer };
    const reason = answer.isReady ? "" : answer.reason;
    if (reason !== this.lastReason) {
      this.lastReason = reason;
      this.onChange(answer);
    }
    return answer;
  }
}
