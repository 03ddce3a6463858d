/**
 * Hints between the control planes of one database: "look again now", never the news itself.
 * Polling stays the truth (the reconcile pass, heartbeats, log followers' one-second poll); a hint
 * only makes a process look sooner. So a lost hint costs latency, never correctness, and a
 * subscriber that receives one re-reads the database.
 *
 * Channels and their payloads (ids only, never data):
 *   reconcile  origin  a job was submitted or canceled: run the pass now (the payload is the
 *                      publishing Store's hintOrigin, so that its own reconciler, already nudged,
 *                      skips it)
 *   cancel     job id  the job was canceled: an agent of it connected to this process is told now
 *   logs       job id  the job's log grew: its followers on this process read now
 * The payload "" on any channel means "anything may have changed" (a listener that reconnected
 * fires every subscriber once with it, since hints may have been lost meanwhile).
 *
 * SQLite: LocalNotifier, in-process only, which is exact for one process. PostgreSQL:
 * PgNotifier (pg-notifier.ts), LISTEN/NOTIFY.
 */
import { EventEmitter } from "node:events";

export type NotifyChannel = "reconcile" | "cancel" | "logs";
export const NOTIFY_CHANNELS: readonly NotifyChannel[] = ["reconcile", "cancel", "logs"];

export interface Notifier {
  /** Sends a hint to every subscriber of the channel, in every process of this database. */
  publish(channel: NotifyChannel, payload: string): Promise<void>;
  /** Calls fn for each hint on the channel; returns the function that unsubscribes. */
  subscribe(channel: NotifyChannel, fn: (payload: string) => void): () => void;
  close(): Promise<void>;
}

/** Where a notifier says what went wrong with its connection (a pino logger fits). */
export interface NotifierLog {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

/** Subscribers by channel, each called on its own: one that throws does not stop the others. */
export class Subscribers {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every follower of a log subscribes: many listeners on one channel is normal here.
    this.emitter.setMaxListeners(0);
  }

  add(channel: NotifyChannel, fn: (payload: string) => void): () => void {
    const safe = (payload: string) => {
      try {
        fn(payload);
      } catch {
        // A hint's subscriber must not break the delivery of others; it re-polls anyway.
      }
    };
    this.emitter.on(channel, safe);
    return () => this.emitter.off(channel, safe);
  }

  deliver(channel: NotifyChannel, payload: string): void {
    this.emitter.emit(channel, payload);
  }

  /** Every subscriber of every channel once with "" (anything may have changed). */
  deliverAll(): void {
    for (const channel of NOTIFY_CHANNELS) this.deliver(channel, "");
  }

  count(): number {
    return NOTIFY_CHANNELS.reduce((n, channel) => n + this.emitter.listenerCount(channel), 0);
  }
}

/** In-process hints (SQLite: one process is the whole control plane). Delivered on a later tick, never inside the publisher's call. */
export class LocalNotifier implements Notifier {
  private readonly subscribers = new Subscribers();

  async publish(channel: NotifyChannel, payload: string): Promise<void> {
    setImmediate(() => this.subscribers.deliver(channel, payload));
  }

  subscribe(channel: NotifyChannel, fn: (payload: string) => void): () => void {
    return this.subscribers.add(channel, fn);
  }

  async close(): Promise<void> {}
}

export function newLocalNotifier(): LocalNotifier {
  return new LocalNotifier();
}

/** How long "logs" hints of one job are merged into one, ms. */
export const LOG_HINT_COALESCE_MS = 50;

/**
 * Keeps "logs" hints cheap: per job, the first is published at once and any more within
 * LOG_HINT_COALESCE_MS become one more at the end of that window (an urgent one goes out at once).
 * Other channels pass through.
 */
export class CoalescingPublisher {
  private readonly windows = new Map<string, { isPending: boolean; timer: NodeJS.Timeout }>();

  constructor(
    private readonly notifier: Notifier,
    private readonly onError: (err: unknown) => void,
    private readonly windowMs = LOG_HINT_COALESCE_MS,
  ) {}

  /**
   * Never throws and never waits: a hint that cannot be sent is reported to onError and dropped.
   * isUrgent: sent at once even inside the job's window (its log is complete: a follower waiting
   * for the end, `hodei run`, should not wait for the window); the window goes on as it was.
   */
  publish(channel: NotifyChannel, payload: string, isUrgent = false): void {
    if (channel !== "logs") return this.send(channel, payload);
    if (isUrgent) return this.send(channel, payload);
    const open = this.windows.get(payload);
    if (open) {
      open.isPending = true;
      return;
    }
    this.send(channel, payload);
    const window = { isPending: false, timer: setTimeout(() => this.closeWindow(payload), this.windowMs) };
    window.timer.unref();
    this.windows.set(payload, window);
  }

  private closeWindow(jobId: string): void {
    const window = this.windows.get(jobId);
    this.windows.delete(jobId);
    if (window?.isPending) this.send("logs", jobId);
  }

  private send(channel: NotifyChannel, payload: string): void {
    this.notifier.publish(channel, payload).catch(this.onError);
  }

  close(): void {
    for (const window of this.windows.values()) clearTimeout(window.timer);
    this.windows.clear();
  }
}
