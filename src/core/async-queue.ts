/**
 * An async queue: the agent's outgoing request stream (push: unbounded, the agent bounds what it
 * sends itself), and the server's outgoing stream to each agent (pushReplacing: an agent that stops
 * reading holds at most one queued item per kind the server sends, see server/agent-stream.ts).
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((result: IteratorResult<T>) => void) | null = null;
  private closed = false;

  /** Items queued and not yet taken by the reader. */
  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    if (this.closed) return;
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /**
   * Queues `item` at the end after dropping every queued item it supersedes (not yet taken by the
   * reader: an item already taken is never recalled). The reader then sees, in order, what it
   * would have seen with push, less the superseded items.
   */
  pushReplacing(item: T, supersedes: (queued: T) => boolean): void {
    if (this.closed) return;
    for (let i = this.items.length - 1; i >= 0; i--) if (supersedes(this.items[i])) this.items.splice(i, 1);
    this.push(item);
  }

  close(): void {
    this.closed = true;
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve({ value: undefined as never, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
        if (this.closed) return Promise.resolve({ value: undefined as never, done: true });
        return new Promise((resolve) => (this.waiter = resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined as never, done: true });
      },
      throw: (err?: unknown) => {
        this.close();
        return Promise.reject(err);
      },
    };
  }
}
