/**
 * Which providers may take work now. A provider found unavailable (its daemon or API did not
 * answer) rests for PROVIDER_RETRY_MS, then its health is checked again before it gets work.
 */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { withDeadline } from "../core/errors.js";
import type { Metrics } from "../metrics.js";
import type { ProviderSlot } from "./context.js";
import { timeProviderCall } from "./metrics.js";

/** How long a provider found unavailable rests before its health is checked again. */
export const PROVIDER_RETRY_MS = 5_000;
const HEALTH_CALL_MS = 10_000;
/** How long a pass waits for the re-checks of down providers before it goes on without them, ms. */
const RECHECK_WAIT_MS = 1_000;

export class ProviderHealth {
  /** Providers known to be down, until when their health is checked again. */
  private readonly unhealthyUntil = new Map<string, number>();
  /** When each provider was last seen unavailable. */
  private readonly lastUnavailableMs = new Map<string, number>();
  /** Why each unavailable provider is so, in words. */
  private readonly details = new Map<string, string>();
  /** Health re-checks in flight, by provider (at most one each). */
  private readonly rechecks = new Map<string, Promise<void>>();

  constructor(
    private readonly providers: Map<string, ProviderSlot>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {}

  markUnhealthy(provider: string, detail: string): void {
    if (!this.unhealthyUntil.has(provider)) this.log.warn({ provider, detail }, "provider unavailable; its jobs wait queued");
    const now = this.clock.nowMs();
    this.unhealthyUntil.set(provider, now + PROVIDER_RETRY_MS);
    this.lastUnavailableMs.set(provider, now);
    this.details.set(provider, detail);
  }

  /** Why the provider is unavailable ("" when it is not known to be). */
  detailOf(provider: string): string {
    return this.unhealthyUntil.has(provider) ? (this.details.get(provider) ?? "") : "";
  }

  /** True when the provider was seen unavailable at or after sinceMs (or is now). */
  wasUnavailableSince(provider: string, sinceMs: number): boolean {
    return this.unhealthyUntil.has(provider) || (this.lastUnavailableMs.get(provider) ?? -Infinity) >= sinceMs;
  }

  /** True while the provider is marked unavailable (until its health is found good again). */
  isMarkedUnavailable(provider: string): boolean {
    return this.unhealthyUntil.has(provider);
  }

  /**
   * Providers that may take work now: a down provider is re-checked every PROVIDER_RETRY_MS, all of
   * them at once. The pass waits at most RECHECK_WAIT_MS for a re-check: one that takes longer (a
   * hung daemon, up to HEALTH_CALL_MS) goes on in the background, its provider still down for this
   * pass, and counts when it ends; it is not started twice, nor waited for by the next passes.
   */
  async available(): Promise<Set<string>> {
    const now = this.clock.nowMs();
    const waits: Promise<void>[] = [];
    for (const [name, slot] of this.providers) {
      const until = this.unhealthyUntil.get(name);
      if (until === undefined || now < until) continue;
      // One started by an earlier pass and still running is not waited for again.
      if (this.rechecks.has(name)) continue;
      const recheck = this.recheck(name, slot).finally(() => this.rechecks.delete(name));
      this.rechecks.set(name, recheck);
      waits.push(recheck);
    }
    if (waits.length > 0) {
      let cancel = () => {};
      const waited = new Promise<void>((resolve) => (cancel = this.clock.setTimer(RECHECK_WAIT_MS, resolve)));
      await Promise.race([Promise.all(waits), waited]);
      cancel();
    }
    return new Set([...this.providers.keys()].filter((name) => !this.unhealthyUntil.has(name)));
  }

  /** One health check of a down provider; never rejects. */
  private async recheck(name: string, slot: ProviderSlot): Promise<void> {
    const check = () => withDeadline(this.clock, `${name} health`, HEALTH_CALL_MS, (signal) => slot.provider.health(signal));
    const health = await timeProviderCall(this.metrics, this.clock, name, "health", check).catch((err: Error) => ({
      healthy: false,
      detail: err.message,
    }));
    if (health.healthy) {
      this.unhealthyUntil.delete(name);
      this.log.info({ provider: name }, "provider available again");
    } else {
      this.markUnhealthy(name, health.detail);
    }
  }
}
