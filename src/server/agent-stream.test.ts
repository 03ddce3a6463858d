/**
 * untilAborted, which reads an agent's stream: it ends its wait for the next message when the
 * stream's signal aborts, and keeps nothing per message while the stream lasts (an agent's stream
 * can carry a message every few milliseconds for days).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";
import { untilAborted } from "./agent-stream.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("untilAborted", () => {
  it("retains no memory per message while the stream stays open (100,000 messages)", async (t) => {
    const N = 100_000;
    let heapAtEnd = 0;
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    async function* agent() {
      for (let i = 0; i < N; i++) {
        if (i === N - 1) {
          gc();
          heapAtEnd = process.memoryUsage().heapUsed;
        }
        yield i;
      }
    }
    let count = 0;
    for await (const _ of untilAborted(agent(), new AbortController().signal)) count++;
    assert.equal(count, N);
    const grownMb = (heapAtEnd - heapBefore) / 1e6;
    t.diagnostic(`heap grew ${grownMb.toFixed(2)} MB over ${N} messages`);
    // Racing each read against one promise pending for the whole stream kept ~350 bytes a message: 35 MB here.
    assert.ok(grownMb < 5, `the heap grew ${grownMb.toFixed(1)} MB over ${N} messages`);
  });

  it("stops waiting for the next message when the signal aborts, with its reason, and releases the source", async () => {
    const controller = new AbortController();
    let returned = false;
    const source: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () => new Promise<IteratorResult<number>>(() => {}), // a peer that sends nothing more
        return: async () => {
          returned = true;
          return { done: true, value: undefined };
        },
      }),
    };
    const reading = (async () => {
      for await (const _ of untilAborted(source, controller.signal));
    })();
    controller.abort(new Error("stream ended by the server"));
    await assert.rejects(reading, /stream ended by the server/);
    assert.equal(returned, true);
  });

  it("reports a failed read as the peer gone, with the read's error as its cause", async () => {
    const broken: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error("ECONNRESET")) }),
    };
    await assert.rejects(
      (async () => {
        for await (const _ of untilAborted(broken, new AbortController().signal));
      })(),
      (err: Error) => err.message === "ECONNRESET" && (err.cause as Error).message === "ECONNRESET",
    );
  });
});
