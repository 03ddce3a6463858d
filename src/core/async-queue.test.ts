/**
 * AsyncQueue: push keeps every item in order (the agent's outgoing stream); pushReplacing drops
 * the queued items a new one supersedes, which bounds what waits for a reader that stops reading
 * (the server's stream to an agent).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AsyncQueue } from "./async-queue.js";

type Message = { kind: string; n: number };
const sameKind = (m: Message) => (queued: Message) => queued.kind === m.kind;

/** Closes the queue and returns what a reader takes from it. */
async function drain<T>(queue: AsyncQueue<T>): Promise<T[]> {
  queue.close();
  const taken: T[] = [];
  for await (const item of queue) taken.push(item);
  return taken;
}

describe("AsyncQueue", () => {
  it("keeps every pushed item, in order, until the reader takes it", async () => {
    const queue = new AsyncQueue<number>();
    for (let i = 0; i < 1000; i++) queue.push(i);
    assert.equal(queue.size, 1000);
    assert.deepEqual(await drain(queue), [...Array(1000).keys()]);
  });

  it("holds one item per kind however many superseding items are pushed unread", async () => {
    const queue = new AsyncQueue<Message>();
    const send = (m: Message) => queue.pushReplacing(m, sameKind(m));
    send({ kind: "ack", n: 1 });
    send({ kind: "run", n: 1 });
    for (let n = 2; n <= 10_000; n++) send({ kind: "ack", n });
    send({ kind: "cancel", n: 1 });
    assert.equal(queue.size, 3);
    // The newest of each kind, each where its newest push put it: what push would have delivered, less the superseded.
    assert.deepEqual(await drain(queue), [
      { kind: "run", n: 1 },
      { kind: "ack", n: 10_000 },
      { kind: "cancel", n: 1 },
    ]);
  });

  it("never recalls an item the reader has taken, and hands a waiting reader the new item at once", async () => {
    const queue = new AsyncQueue<Message>();
    const reader = queue[Symbol.asyncIterator]();
    const send = (m: Message) => queue.pushReplacing(m, sameKind(m));
    send({ kind: "ack", n: 1 });
    assert.deepEqual((await reader.next()).value, { kind: "ack", n: 1 });
    const waiting = reader.next();
    send({ kind: "ack", n: 2 });
    assert.deepEqual((await waiting).value, { kind: "ack", n: 2 });
    assert.equal(queue.size, 0);
  });

  it("ignores items pushed after close", async () => {
    const queue = new AsyncQueue<Message>();
    queue.push({ kind: "ack", n: 1 });
    queue.close();
    queue.push({ kind: "ack", n: 2 });
    queue.pushReplacing({ kind: "ack", n: 3 }, () => true);
    assert.deepEqual(await drain(queue), [{ kind: "ack", n: 1 }]);
  });
});
