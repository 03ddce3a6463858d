/**
 * The warm pool's close() against a launch still waiting for the pool's lock (behind a cold
 * start's create), with the Docker calls stubbed: nothing may be created once close() has returned
 * (the server's process ends then, and such a container would be left behind until a reaper of the
 * same cluster ran). The pool on a real daemon is tested in docker-pool.test.ts.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { WarmPool } from "./docker-pool.js";

const turn = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("WarmPool.close", () => {
  it("waits for a launch queued behind a cold start: nothing is created after it returns", async () => {
    let release = () => {};
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let isClosed = false;
    let next = 0;
    const createdAfterClose: string[] = [];
    const removed: string[] = [];
    const pool = new WarmPool({
      size: 1,
      maxWorkers: 4,
      create: async () => {
        const id = `warm-${next++}`;
        if (isClosed) createdAfterClose.push(id);
        return id;
      },
      attachAndStart: async () => new PassThrough(),
      waitExit: (_id, signal) => new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
      countContainers: async () => 0,
      remove: async (id) => void removed.push(id),
      log: { warn: () => {} },
    });
    // A cold start holds the lock; the pool's first fill (a 0 ms timer) queues behind it.
    const cold = pool.createCold(async () => {
      await blocked;
      return "cold";
    });
    pool.start("http://127.0.0.1:1");
    await turn(20);
    const closing = pool.close().then(() => (isClosed = true));
    await turn(20); // a close() that did not wait for the lock has returned by now
    release();
    assert.equal(await cold, "cold");
    await closing;
    await turn(20);
    assert.deepEqual(createdAfterClose, []);
    assert.equal(pool.idleCount, 0);
    assert.equal(next, 0, "the queued launch found the pool closed");
  });
});
