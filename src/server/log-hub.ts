/**
 * Wake-ups for log followers and job watchers. A hint only: followers also re-read the database on
 * a timer, so a missed notification costs latency, never data. Given the store, a notification
 * goes out as a "logs" hint (store/notifier.ts, merged per job over 50 ms) and followers on this
 * process wake when any replica's hint arrives, their own included; without it, in-process only.
 */
import { EventEmitter } from "node:events";
import type { Store } from "../store/store.js";

export class LogHub {
  private readonly emitter = new EventEmitter();
  private readonly unsubscribe: () => void = () => {};

  constructor(private readonly store?: Pick<Store, "hint" | "notifier">) {
    this.emitter.setMaxListeners(0);
    if (store) this.unsubscribe = store.notifier.subscribe("logs", (jobId) => this.wake(jobId));
  }

  /** The job's log grew. isEnd: its attempt's result is stored (the log is complete): followers wake now, unmerged. */
  notify(jobId: string, isEnd = false): void {
    if (this.store) this.store.hint("logs", jobId, isEnd);
    else this.wake(jobId);
  }

  /** Wakes the followers of jobId; "" (hints may have been lost) wakes every follower. */
  private wake(jobId: string): void {
    if (jobId !== "") this.emitter.emit(jobId);
    else for (const name of this.emitter.eventNames()) this.emitter.emit(name);
  }

  close(): void {
    this.unsubscribe();
  }

  /** Resolves on the next notification for jobId, after timeoutMs, or when signal aborts. */
  wait(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emitter.off(jobId, done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emitter.once(jobId, done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}
