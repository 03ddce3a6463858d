/**
 * A signal that aborts after a time limit or with any of the given signals, built by hand.
 *
 * Not `AbortSignal.any([..., AbortSignal.timeout(ms)])`: on Node 20 the combined signal holds its
 * sources weakly, so a garbage collection between its creation and the time limit drops the timeout's
 * signal, and the combined one never aborts (measured on 20.20: two such signals, gc() 20 ms after
 * them, neither aborted at 100 ms nor ever). A time limit that may never fire is no limit.
 */

export interface Abort {
  signal: AbortSignal;
  /** True once the time limit (not one of the given signals) aborted it. */
  timedOut(): boolean;
  /** Releases the timer and the listeners on the given signals; done by itself once it aborts. */
  dispose(): void;
}

/** Aborts after `ms` (none when undefined) with a TimeoutError, as AbortSignal.timeout does, or with the reason of the first of `signals` to abort. */
export function abortAfter(ms: number | undefined, ...signals: (AbortSignal | undefined)[]): Abort {
  const controller = new AbortController();
  let isTimedOut = false;
  const cleanups: (() => void)[] = [];
  const dispose = () => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
  controller.signal.addEventListener("abort", dispose, { once: true });
  for (const source of signals) {
    if (!source) continue;
    if (source.aborted) {
      controller.abort(source.reason);
      return { signal: controller.signal, timedOut: () => false, dispose };
    }
    const onAbort = () => controller.abort(source.reason);
    source.addEventListener("abort", onAbort, { once: true });
    cleanups.push(() => source.removeEventListener("abort", onAbort));
  }
  if (ms !== undefined) {
    const timer = setTimeout(() => {
      isTimedOut = true;
      controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError"));
    }, ms);
    // As AbortSignal.timeout's: a time limit alone never keeps the process up.
    timer.unref();
    cleanups.push(() => clearTimeout(timer));
  }
  return { signal: controller.signal, timedOut: () => isTimedOut, dispose };
}
