/**
 * Every call the control plane makes to a provider goes through here, so that a hung Docker daemon
 * or Kubernetes API cannot pile calls up or freeze a pass:
 * - at most `concurrency` calls per provider and lane are in flight (a full pass inspects every live
 *   worker). Starts and stops, which wait on a resource's life (up to a minute, or a pod stuck
 *   terminating), have a lane of their own: the quick calls a pass waits for (inspect, list, last
 *   output) never queue behind them;
 * - waiting for a slot is bounded by the call's time limit too: a call that gets none in time fails
 *   (and its step retries at the next pass) instead of holding the pass;
 * - a call that takes longer than its time limit is aborted (its AbortSignal fires) and rejects with
 *   UnavailableError, which marks the provider unavailable;
 * - while a provider is marked unavailable, further calls fail at once instead of queueing behind
 *   the hung ones (the provider's health is checked again by the provision step).
 * Each call that reaches the provider is timed, and its failure counted, by provider and call
 * (hodei_provider_call_seconds, hodei_provider_call_errors_total). A call about one worker (given
 * `worker`) is also a span of its job's trace (job-trace.ts).
 */
import { toError, UnavailableError, withDeadline } from "../core/errors.js";
import type { Clock } from "../core/clock.js";
import type { Metrics } from "../metrics.js";
import type { WorkerRow } from "../store/schema.js";
import { type JobTrace, NO_JOB_TRACE } from "./job-trace.js";
import { timeProviderCall } from "./metrics.js";
import type { ProviderHealth } from "./provider-health.js";

/** Calls in flight per provider and lane. */
export const PROVIDER_CONCURRENCY = 8;
/** The calls of the slow lane: they last as long as a resource takes to start or to stop. */
const SLOW_CALLS = new Set(["start", "stop"]);

export class ProviderCalls {
  private readonly inFlight = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(
    private readonly health: ProviderHealth,
    private readonly clock: Clock,
    private readonly concurrency = PROVIDER_CONCURRENCY,
    private readonly metrics?: Metrics,
    private readonly trace: JobTrace = NO_JOB_TRACE,
  ) {}

  /**
   * Runs `call` against `provider` within timeoutMs; `what` names it in errors ("inspect").
   * `worker`: the worker the call is about, whose job's trace records it.
   */
  async run<T>(provider: string, what: string, timeoutMs: number, call: (signal: AbortSignal) => Promise<T>, worker?: WorkerRow): Promise<T> {
    this.refuseIfUnavailable(provider, what); // before queueing behind calls to a hung provider
    const lane = `${provider} ${SLOW_CALLS.has(what) ? "slow" : "quick"}`;
    await this.acquire(lane, `${provider} ${what}`, timeoutMs);
    const startMs = this.clock.nowMs();
    try {
      this.refuseIfUnavailable(provider, what); // and again: it may have been marked while this call waited
      const result = await this.withDeadline(provider, what, timeoutMs, call);
      if (worker) this.trace.providerCall(worker, what, startMs, this.clock.nowMs(), { result });
      return result;
    } catch (err) {
      if (worker) this.trace.providerCall(worker, what, startMs, this.clock.nowMs(), { error: toError(err) });
      throw err;
    } finally {
      this.release(lane);
    }
  }

  private refuseIfUnavailable(provider: string, what: string): void {
    if (this.health.isMarkedUnavailable(provider)) throw new UnavailableError(`${provider} ${what}: the provider is unavailable`);
  }

  private async withDeadline<T>(provider: string, what: string, timeoutMs: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await timeProviderCall(this.metrics, this.clock, provider, what, () => withDeadline(this.clock, `${provider} ${what}`, timeoutMs, call));
    } catch (err) {
      const error = toError(err);
      if (error instanceof UnavailableError) this.health.markUnhealthy(provider, error.message);
      throw error;
    }
  }

  /** Takes a slot of `lane`, waiting at most timeoutMs for one (the call then has its own timeoutMs). */
  private async acquire(lane: string, what: string, timeoutMs: number): Promise<void> {
    const n = this.inFlight.get(lane) ?? 0;
    if (n < this.concurrency) {
      this.inFlight.set(lane, n + 1);
      return;
    }
    const queue = this.waiting.get(lane) ?? [];
    this.waiting.set(lane, queue);
    await new Promise<void>((resolve, reject) => {
      const cancelTimer = this.clock.setTimer(timeoutMs, () => {
        queue.splice(queue.indexOf(take), 1);
        // Not UnavailableError: the calls in flight say whether the provider answers.
        reject(new Error(`${what}: no free call slot within ${timeoutMs} ms (${this.concurrency} calls of its kind in flight); retried at the next pass`));
      });
      const take = () => {
        cancelTimer();
        resolve();
      };
      queue.push(take);
    });
  }

  private release(lane: string): void {
    const next = this.waiting.get(lane)?.shift();
    if (next) next(); // the slot passes to the next waiter
    else this.inFlight.set(lane, (this.inFlight.get(lane) ?? 1) - 1);
  }
}
