/**
 * Copies the SQLite WAL back into the database file off the event loop. A checkpoint copies up to
 * 16 MiB of pages and fsyncs: done by the connection whose commit crossed wal_autocheckpoint, it
 * held the server's event loop for 50-100 ms (better-sqlite3 is synchronous), so every API call and
 * stream stalled once per 16 MiB written (a large job's log). Here a worker thread with a connection
 * of its own runs `wal_checkpoint(PASSIVE)` every intervalMs: passive, it neither waits for nor
 * blocks the server's readers and writers, and WAL mode lets writes go on while it copies.
 *
 * The server's connection keeps an autocheckpoint, at a higher threshold, as the backstop should
 * this thread fall behind or fail (its failure is logged; the server goes on).
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Clock } from "../core/clock.js";

/** What `PRAGMA wal_checkpoint` answers: frames in the WAL, and how many are in the database now. */
export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

export interface CheckpointerOptions {
  /** Time between checkpoints, ms. Default 1000. */
  intervalMs?: number;
  /** Schedules the checkpoints; default: timers that never keep the process alive. */
  clock?: Pick<Clock, "setTimer">;
  /** Where a failed checkpoint or a lost thread is reported. */
  log?: { warn(fields: object, message: string): void };
}

// Runs in the worker (CommonJS, eval'd): one connection, a checkpoint per message.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driverPath);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma("busy_timeout = 0");
parentPort.on("message", (id) => {
  try {
    const [result] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ id, result });
  } catch (err) {
    parentPort.postMessage({ id, error: err && err.message ? err.message : String(err) });
  }
});
`;

const unrefTimers: Pick<Clock, "setTimer"> = {
  setTimer(delayMs, fn) {
    const timer = setTimeout(fn, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export class SqliteCheckpointer {
  private readonly worker: Worker;
  private readonly intervalMs: number;
  private readonly clock: Pick<Clock, "setTimer">;
  private readonly log: CheckpointerOptions["log"];
  private readonly waiting = new Map<number, { resolve(r: CheckpointResult): void; reject(e: Error): void }>();
  private nextId = 1;
  private cancelTimer: (() => void) | null = null;
  private isStopped = false;
  private hasExited = false;
  /** Resolves when the thread has exited. */
  readonly exited: Promise<void>;

  constructor(path: string, options: CheckpointerOptions = {}) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.clock = options.clock ?? unrefTimers;
    this.log = options.log;
    const driverPath = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driverPath } });
    this.worker.unref();
    this.worker.on("message", (message: { id: number; result?: CheckpointResult; error?: string }) => {
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(`WAL checkpoint failed: ${message.error}`));
      else waiter?.resolve(message.result!);
    });
    this.worker.on("error", (err) => this.log?.warn({ err }, "the WAL checkpoint thread failed; the database's own autocheckpoint goes on"));
    this.exited = new Promise((resolve) =>
      this.worker.once("exit", () => {
        this.hasExited = true;
        for (const waiter of this.waiting.values()) waiter.reject(new Error("the WAL checkpoint thread has exited"));
        this.waiting.clear();
        resolve();
      }),
    );
    this.schedule();
  }

  /** One passive checkpoint now, in the thread (the step the timer runs). */
  checkpoint(): Promise<CheckpointResult> {
    if (this.isStopped) return Promise.reject(new Error("the WAL checkpointer is stopped"));
    // A message to a thread that has exited is never answered.
    if (this.hasExited) return Promise.reject(new Error("the WAL checkpoint thread has exited"));
    const id = this.nextId++;
    // Referenced while an answer is awaited (so a caller awaiting it keeps the process up), never otherwise.
    this.worker.ref();
    return new Promise<CheckpointResult>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage(id);
    }).finally(() => {
      if (this.waiting.size === 0) this.worker.unref();
    });
  }

  /** Stops the timer and the thread (the connection closes with it). */
  async stop(): Promise<void> {
    this.isStopped = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
    await this.worker.terminate();
    await this.exited;
  }

  /** The next checkpoint, intervalMs after the last one ended: they never overlap. */
  private schedule(): void {
    if (this.isStopped) return;
    this.cancelTimer = this.clock.setTimer(this.intervalMs, () => {
      this.checkpoint()
        .catch((err: unknown) => {
          if (!this.isStopped) this.log?.warn({ err }, "WAL checkpoint failed; the next one is tried in its turn");
        })
        .finally(() => this.schedule());
    });
  }
}
