/**
 * The control plane's own liveness. Workers are judged by deadlines (register within, heartbeat
 * within, finish within); time during which this control plane was not running (before it started,
 * or frozen: SIGSTOP, a paused VM, a long event-loop block) is not held against them, because their
 * heartbeats and results may be waiting unread in our sockets. A deadline is over only when enough
 * *present* time has passed: wall time minus the absences that overlap it.
 *
 * Absences are seen by beat(): called on a short timer and at the start of every reconcile pass
 * (after a freeze, the pass may run before the timer), a beat that comes much later than the
 * previous one records the time between them as an absence. Everything before this process started
 * is one absence too, so a restart gives every worker its full deadlines from the restart.
 */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";

/** How often the liveness timer beats, ms. */
export const BEAT_INTERVAL_MS = 500;
/** A beat later than this after the previous one means the control plane was away, ms. */
export const ABSENCE_THRESHOLD_MS = 2_000;
/** Absences remembered; older ones are merged into one so the list stays short. */
const MAX_ABSENCES = 64;

interface Absence {
  fromMs: number;
  toMs: number;
}

export class Liveness {
  private readonly absences: Absence[];
  private lastBeatMs: number;
  /** When this control plane started (everything before is one absence). */
  readonly startedAtMs: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    const now = clock.nowMs();
    this.startedAtMs = now;
    this.absences = [{ fromMs: 0, toMs: now }];
    this.lastBeatMs = now;
  }

  start(): void {
    this.timer ??= setInterval(() => this.beat(), BEAT_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Records that the control plane is running now; a long silence before it was an absence. */
  beat(): void {
    const now = this.clock.nowMs();
    const silenceMs = now - this.lastBeatMs;
    if (silenceMs > ABSENCE_THRESHOLD_MS) {
      this.absences.push({ fromMs: this.lastBeatMs, toMs: now });
      if (this.absences.length > MAX_ABSENCES) {
        const [first, second] = this.absences.splice(1, 2);
        this.absences.splice(1, 0, { fromMs: first.fromMs, toMs: second.toMs });
      }
      this.log.warn({ absentMs: silenceMs }, "the control plane was not running for a while; workers' deadlines do not count that time");
    }
    if (now > this.lastBeatMs) this.lastBeatMs = now;
  }

  /** Milliseconds of [sinceMs, untilMs] during which the control plane was absent. */
  absentMs(sinceMs: number, untilMs: number): number {
    let total = 0;
    for (const { fromMs, toMs } of this.absences) total += Math.max(0, Math.min(toMs, untilMs) - Math.max(fromMs, sinceMs));
    return total;
  }

  /** Present time (wall time minus absences) from sinceMs until now. */
  presentMsSince(sinceMs: number): number {
    const now = this.clock.nowMs();
    return now - sinceMs - this.absentMs(sinceMs, now);
  }

  /** True when at least durationMs of present time has passed since sinceMs (a deadline reached). */
  isOverdue(sinceMs: number, durationMs: number): boolean {
    return this.presentMsSince(sinceMs) >= durationMs;
  }
}
