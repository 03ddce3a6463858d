/**
 * The Docker provider's warm pool: idle containers of the default image, started and connected
 * ahead of need (their agent booted and called Ping), each holding no identity and no secret.
 * A job takes one and gets its assignment on the container's stdin, which the pool has held open
 * since the container started (OpenStdin, StdinOnce: the one attachment is ours).
 *
 * Invariants:
 * - A container is taken at most once: take() removes it from the pool before anyone writes to it.
 * - Idle containers die with this control plane: when the process ends, its attachment closes, the
 *   daemon closes the container's stdin and the idle agent exits. The reaper removes what is left
 *   (DockerProvider.list reports an idle container that is no longer running, never a running one).
 * - Capacity: idle containers only fill spare capacity, and give it back. Within this control
 *   plane, the cluster's containers never exceed maxWorkers (the claim already keeps workers to
 *   it): a launch counts the containers plus the cold starts in flight and launches none at
 *   maxWorkers; a job that finds no idle container waits for a launch in flight rather than start
 *   a container beside it; a cold start at maxWorkers first removes an idle container. Counting and
 *   creating happen under one lock. (Replicas sharing a daemon do not share the lock: one
 *   replica's launch may race another's cold start, by one container per launch.)
 * - Refills run off the job's path, never inside start(): REFILL_DELAY_MS after a worker stops (a
 *   launch beside a short job's registration, run and removal slowed each of them: measured), and
 *   at the latest TAKEN_REFILL_DELAY_MS after a take (a long job does not keep the pool short).
 * - Background failures are logged and retried after FAILURE_RETRY_MS; they never end the process.
 */
import type { Duplex } from "node:stream";

/** One idle container: its full id and the held attachment to its stdin. */
export interface WarmContainer {
  id: string;
  stdin: Duplex;
  serverUrl: string;
  /** Stops watching for the container's exit (it was taken or discarded). */
  unwatch: () => void;
}

export interface WarmPoolOptions {
  /** Idle containers to keep. 0: no pool. */
  size: number;
  /** The provider's capacity (HODEI_DOCKER_MAX_WORKERS); idle containers count against it. */
  maxWorkers: number;
  /** Creates one idle container for agents reaching serverUrl (under the capacity lock); returns its id. */
  create(serverUrl: string): Promise<string>;
  /** Attaches to the created container's stdin, starts it, and returns the held attachment. */
  attachAndStart(id: string): Promise<Duplex>;
  /** Resolves when the container exits (a long poll); rejects when aborted. */
  waitExit(id: string, signal: AbortSignal): Promise<void>;
  /** How many containers of this cluster exist now, in any state. */
  countContainers(): Promise<number>;
  /** Removes a container (force); gone already is not an error. */
  remove(id: string): Promise<void>;
  log: { warn(fields: object, message: string): void };
}

/** Delay before a freed slot is refilled: a launch must not land on the new worker's registration. */
export const REFILL_DELAY_MS = 150;
/** Latest refill after a take, when no worker stopped before. */
export const TAKEN_REFILL_DELAY_MS = 2000;
const FAILURE_RETRY_MS = 5000;

export class WarmPool {
  private idle: WarmContainer[] = [];
  private readonly launching = new Set<{ serverUrl: string; done: Promise<void> }>();
  private coldInFlight = 0;
  private serverUrl: string | null = null;
  private isClosed = false;
  private isFilling = false;
  private timer: NodeJS.Timeout | null = null;
  private timerDueMs = 0;
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: WarmPoolOptions) {}

  get size(): number {
    return this.options.size;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Starts filling the pool for agents that reach the control plane at serverUrl. */
  start(serverUrl: string): void {
    if (this.options.size <= 0) return;
    this.serverUrl = serverUrl;
    this.refillSoon(0);
  }

  /**
   * An idle container for serverUrl, removed from the pool: a ready one, else one whose launch is
   * in flight (sooner than a cold start, and no container beside it); undefined when there is none.
   */
  async acquire(serverUrl: string): Promise<WarmContainer | undefined> {
    for (;;) {
      const warm = this.idle.find((w) => w.serverUrl === serverUrl);
      if (warm) {
        this.idle = this.idle.filter((w) => w !== warm);
        warm.unwatch();
        this.refillSoon(TAKEN_REFILL_DELAY_MS);
        return warm;
      }
      const launch = [...this.launching].find((l) => l.serverUrl === serverUrl);
      if (!launch) return undefined;
      await launch.done;
    }
  }

  /**
   * Runs create (a cold start's container create) under the lock, counted as in flight from now,
   * after removing an idle container when the cluster is at capacity. Without a pool it runs at once.
   */
  async createCold<T>(create: () => Promise<T>): Promise<T> {
    if (this.options.size <= 0) return create();
    this.coldInFlight++;
    try {
      return await this.locked(async () => {
        const spare = this.idle.shift();
        if (spare) {
          if ((await this.options.countContainers()) >= this.options.maxWorkers) await this.discard(spare);
          else this.idle.unshift(spare);
        }
        return create();
      });
    } finally {
      this.coldInFlight--;
    }
  }

  /** Capacity was freed (a worker stopped): top the pool up, off the caller's path (an earlier refill stands). */
  refillSoon(delayMs = REFILL_DELAY_MS): void {
    if (this.options.size <= 0 || this.isClosed || this.serverUrl === null) return;
    const dueMs = Date.now() + delayMs;
    if (this.timer && this.timerDueMs <= dueMs) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDueMs = dueMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.fill();
    }, delayMs);
    this.timer.unref();
  }

  /**
   * Stops refilling and removes every idle container (their agents see stdin close and exit).
   * Returns once no launch can create a container any more: one waiting for the lock (behind a cold
   * start) finds the pool closed and creates none; one past it is awaited and its container removed.
   */
  async close(): Promise<void> {
    this.isClosed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.locked(async () => {});
    await Promise.all([...this.launching].map((l) => l.done));
    const idle = this.idle;
    this.idle = [];
    await Promise.all(idle.map((w) => this.discard(w)));
  }

  private async fill(): Promise<void> {
    if (this.isFilling) return;
    this.isFilling = true;
    try {
      while (!this.isClosed && this.idle.length < this.options.size) {
        if (!(await this.launchOne())) return;
      }
    } catch (err) {
      this.options.log.warn({ err }, "warm container launch failed; retrying later");
      this.refillSoon(FAILURE_RETRY_MS);
    } finally {
      this.isFilling = false;
    }
  }

  /** Launches one idle container; false when capacity is used up or the pool closed (none added). */
  private async launchOne(): Promise<boolean> {
    const serverUrl = this.serverUrl!;
    let markDone = () => {};
    const launch = { serverUrl, done: new Promise<void>((resolve) => (markDone = resolve)) };
    try {
      const id = await this.locked(async () => {
        if (this.isClosed) return null;
        const count = await this.options.countContainers();
        if (count + this.coldInFlight >= this.options.maxWorkers) return null;
        this.launching.add(launch); // in the same tick as the count: a start from now on waits for it
        return this.options.create(serverUrl);
      });
      if (id === null) return false;
      let stdin: Duplex;
      try {
        stdin = await this.options.attachAndStart(id);
      } catch (err) {
        await this.options.remove(id).catch(() => {});
        throw err;
      }
      const watch = new AbortController();
      const warm: WarmContainer = { id, stdin, serverUrl, unwatch: () => watch.abort() };
      // An idle container that exits (its agent crashed, someone killed it) is replaced.
      const onGone = () => {
        if (!this.idle.includes(warm)) return;
        this.idle = this.idle.filter((w) => w !== warm);
        warm.stdin.destroy();
        this.options.log.warn({ containerId: id }, "warm container exited while idle; replacing it");
        void this.options.remove(id).catch((err: unknown) => this.options.log.warn({ err, containerId: id }, "could not remove an exited warm container; the reaper will"));
        this.refillSoon(FAILURE_RETRY_MS);
      };
      void this.options
        .waitExit(id, watch.signal)
        .then(onGone, () => {
          if (!watch.signal.aborted) onGone(); // the daemon lost the watch: trust the container no more
        })
        .catch((err: unknown) => this.options.log.warn({ err, containerId: id }, "could not handle a warm container's exit; the reaper will"));
      if (this.isClosed) {
        await this.discard(warm);
        return false;
      }
      this.idle.push(warm);
      return true;
    } finally {
      this.launching.delete(launch);
      markDone();
    }
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.lock.then(fn);
    this.lock = result.catch(() => {});
    return result;
  }

  private async discard(warm: WarmContainer): Promise<void> {
    warm.unwatch();
    warm.stdin.destroy();
    try {
      await this.options.remove(warm.id);
    } catch (err) {
      this.options.log.warn({ err, containerId: warm.id }, "could not remove a warm container; the reaper will");
    }
  }
}
