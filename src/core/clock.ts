/**
 * Time is injected everywhere so tests can move it; production uses the system clock. A clock also
 * schedules the timers whose expiry the control plane acts on (time limits of provider calls), so
 * that a test moves them with the clock instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  nowMs(): number;
  /** Calls fn once, delayMs from now; returns a function that cancels it. */
  setTimer(delayMs: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(delayMs, fn) {
    const timer = setTimeout(fn, delayMs);
    return () => clearTimeout(timer);
  },
};

/** A clock tests move by hand; its timers fire when advance() passes their time. */
export class ManualClock implements Clock {
  private timers: { atMs: number; fn: () => void }[] = [];

  constructor(private timeMs = 1_700_000_000_000) {}

  nowMs(): number {
    return this.timeMs;
  }

  setTimer(delayMs: number, fn: () => void): () => void {
    const timer = { atMs: this.timeMs + delayMs, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward, firing (in time order) every timer that falls due. */
  advance(ms: number): void {
    const target = this.timeMs + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.atMs <= target).sort((a, b) => a.atMs - b.atMs)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.timeMs = Math.max(this.timeMs, due.atMs);
      due.fn();
    }
    this.timeMs = target;
  }

  /** Timers not yet fired (tests check nothing is left waiting). */
  get pendingTimers(): number {
    return this.timers.length;
  }
}
