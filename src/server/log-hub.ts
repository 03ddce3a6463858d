/**
 * In-process wake-ups for log followers and job watchers. A hint only: followers also re-read the
 * database on a timer, so a missed notification costs latency, never data.
 */
import { EventEmitter } from "node:events";

export class LogHub {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  notify(jobId: string): void {
    this.emitter.emit(jobId);
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
