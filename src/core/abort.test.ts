/**
 * abortAfter: its time limit fires even when a garbage collection runs before it (the case that
 * defeats AbortSignal.any with AbortSignal.timeout on Node 20), a given signal's abort passes on
 * with its reason, and dispose releases the listeners it put on the given signals.
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { abortAfter } from "./abort.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("abortAfter", () => {
  it("aborts at its time limit with a TimeoutError, though a garbage collection ran before it", async () => {
    const live = new AbortController();
    const abort = abortAfter(50, live.signal);
    gc();
    // The limit's timer does not keep the process up (as AbortSignal.timeout's): this test does.
    const keepAlive = setTimeout(() => {}, 5000);
    const reason = await new Promise<unknown>((resolve) => abort.signal.addEventListener("abort", () => resolve(abort.signal.reason)));
    clearTimeout(keepAlive);
    assert.equal((reason as DOMException).name, "TimeoutError");
    assert.equal(abort.timedOut(), true);
    assert.deepEqual(getEventListeners(live.signal, "abort"), [], "its listener on the given signal is gone");
  });

  it("aborts with the reason of a given signal, at once when it is already aborted", () => {
    const first = new AbortController();
    const abort = abortAfter(60_000, undefined, first.signal);
    first.abort(new Error("stopping"));
    assert.equal((abort.signal.reason as Error).message, "stopping");
    assert.equal(abort.timedOut(), false);
    const already = abortAfter(60_000, AbortSignal.abort(new Error("gone")));
    assert.equal((already.signal.reason as Error).message, "gone");
  });

  it("dispose removes its listeners from the given signals and its timer", async () => {
    const long = new AbortController();
    for (let i = 0; i < 100; i++) abortAfter(10, long.signal).dispose();
    assert.equal(getEventListeners(long.signal, "abort").length, 0);
    const disposed = abortAfter(10, long.signal);
    disposed.dispose();
    await new Promise((r) => setTimeout(r, 30)); // past its limit
    assert.equal(disposed.signal.aborted, false, "a disposed limit does not fire");
  });
});
