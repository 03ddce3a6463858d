/**
 * One agent connection (a Connect stream) and what it may send.
 *
 * Invariants kept here:
 * - log chunks are numbered 1, 2, 3, ... per attempt: a resend is acknowledged and ignored; a gap,
 *   a seq out of range, an oversized chunk or batch is refused with InvalidArgument (the stream ends);
 * - checking the numbering and storing are one guarded transaction (store/logs.ts), which also
 *   refuses every chunk once the attempt has ended; after the result on this stream nothing more
 *   is accepted (a second result or a second hello is refused with InvalidArgument);
 * - at most the log limit (plus a small allowance for the agent's own system lines) is stored,
 *   whatever the agent sends; past it one marker is written and later chunks are only acknowledged;
 * - a stream on which the agent has been silent longer than the heartbeat timeout is ended;
 * - what waits to be sent to the agent is bounded however slowly it reads (an agent that sends and
 *   never reads costs no memory per message): a message replaces an unsent one of its kind, so at
 *   most one of each kind waits (acks are cumulative and never go back on a stream, a RunJob sent
 *   again is the same job, a cancel is sent once, a result ack says nothing more a second time).
 *   Connect takes the next message only when the HTTP/2 stream has room (it awaits 'drain'), so
 *   the stream's own buffer is bounded too;
 * - a job's secrets are opened only to be put in its RunJob, never logged nor kept.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { isRetryableExit } from "../core/backoff.js";
import { ConflictError, InvalidInputError, toError, UnavailableError } from "../core/errors.js";
import { isTerminal, type JobState } from "../core/job-state.js";
import { SecretOpenError } from "../core/secret-box.js";
import { commandTraceparent } from "../core/trace-context.js";
import { type AgentMessage, type JobResult, type LogChunk, type RunJob, RunJobSchema, type ServerMessage, ServerMessageSchema } from "../gen/hodei/v1/worker_pb.js";
import { AsyncQueue } from "../core/async-queue.js";
import { AGENT_LOG_STATES, type LogBudget } from "../store/logs.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { reclassifyDecodeError } from "./error-interceptor.js";
import { observeDispatched, observeJobFinished, observeLogBytes } from "../scheduler/metrics.js";
import type { WorkerServiceDeps } from "./worker-service.js";

/**
 * Highest seq accepted. Followers order entries by a cursor of attempt * 2^32 + seq, so a seq must
 * stay below 2^32; 2^31 - 1 also fits every int32. The agent numbers chunks of up to 64 KiB and
 * stops producing them at the log limit (at most 1 GiB), so a real attempt stays far below it.
 */
export const MAX_SEQ = 2 ** 31 - 1;
/** Bytes of one chunk's data at most: 4 times the agent's 64 KiB chunks. */
export const MAX_CHUNK_BYTES = 256 * 1024;
/** Chunks in one batch at most (the agent sends at most 128). */
export const MAX_BATCH_CHUNKS = 512;
/** Room past the log limit for the agent's own short system lines (its truncation marker, a cancel or timeout note). */
export const SYSTEM_ALLOWANCE_BYTES = 64 * 1024;
const STREAMS = new Set(["stdout", "stderr", "system"]);
/** Characters kept of a result's error (it becomes the job's reason); the rest is cut with a note. */
export const MAX_ERROR_CHARS = 4096;
/** A result's signal: a name as Node reports it (SIGKILL, SIGRTMIN+3 is not one Node gives). */
const SIGNAL_NAME = /^SIG[A-Z0-9]{1,12}$/;
/** Why a stream's reading stopped when end() stops it: never shown, only compared. */
const STREAM_ENDED = new Error("agent stream ended");

const msg = (kind: MessageInitShape<typeof ServerMessageSchema>["kind"]) => create(ServerMessageSchema, { kind });

export class AgentStream {
  hasResult = false;
  /** Why the stream ended, if not because the agent closed it: rethrown to the agent. */
  failure: Error | null = null;
  readonly out = new AsyncQueue<ServerMessage>();
  private lastMessageMs: number;
  private cancelSent = false;
  private hasHello = false;
  /** The highest seq acknowledged on this stream: an ack never goes back (a repeated hello reads an older log_seq). */
  private ackedSeq = 0;
  private readonly stop = new AbortController();
  /** The job as this stream sent it in RunJob (its fields that never change are read again at the result). */
  private job: JobRow | undefined;
  /** What this stream's last log append left on the worker row: the result needs no read when it covers the result's lastSeq. */
  private stored: { logSeq: number; logBytes: number; isTruncated: boolean } | undefined;

  /** dispatchedJob: the job as the Register on this stream dispatched it (then the hello says started). */
  constructor(
    private worker: WorkerRow,
    private readonly deps: WorkerServiceDeps,
    dispatchedJob?: JobRow,
  ) {
    this.lastMessageMs = deps.clock.nowMs();
    this.job = dispatchedJob;
  }

  get jobId(): string {
    return this.worker.job_id;
  }

  get workerId(): string {
    return this.worker.id;
  }

  get attempt(): number {
    return this.worker.attempt;
  }

  /** Ends the stream telling the agent why (shutdown: Unavailable, so it reconnects elsewhere). */
  endWith(error: Error): void {
    this.failure ??= error;
    this.end();
  }

  /** Reads the agent's messages until it closes the stream, an error ends it, or end() is called. Never throws. */
  async consume(requests: AsyncIterable<AgentMessage>): Promise<void> {
    try {
      for await (const message of untilAborted(requests, this.stop.signal)) {
        this.lastMessageMs = this.deps.clock.nowMs();
        switch (message.kind.case) {
          case "hello":
            await this.onHello(message.kind.value.started);
            break;
          case "logs":
            await this.onLogs(message.kind.value.chunks);
            break;
          case "heartbeat":
            await this.onHeartbeat();
            break;
          case "result":
            await this.onResult(message.kind.value);
            break;
          case "register":
            throw new InvalidInputError("register: only as the first message of a stream opened without a session", "register");
        }
      }
    } catch (err) {
      if (!this.stop.signal.aborted) this.fail(err);
    } finally {
      this.out.close();
    }
  }

  /**
   * Ends the stream if the agent has sent nothing for longer than the heartbeat timeout of present
   * time (the control plane's own absences, when it could not read, do not count); true if it did.
   */
  endIfSilent(): boolean {
    const silentMs = this.deps.reconciler.liveness.presentMsSince(this.lastMessageMs);
    if (silentMs <= this.deps.heartbeatTimeoutMs || this.stop.signal.aborted) return false;
    this.fail(new UnavailableError(`no message from the agent for ${silentMs} ms (heartbeat timeout ${this.deps.heartbeatTimeoutMs} ms); stream closed`));
    this.end();
    return true;
  }

  /** Stops reading the agent's messages and closes the way down. */
  end(): void {
    // With a reason of ours: abort() without one builds a DOMException (a stack trace) per stream.
    this.stop.abort(STREAM_ENDED);
    this.out.close();
  }

  /** Queues a message for the agent in place of an unsent one of its kind (see the invariants above). */
  private send(message: ServerMessage): void {
    this.out.pushReplacing(message, (queued) => queued.kind.case === message.kind.case);
  }

  /** Acknowledges every chunk up to seq (cumulative), or up to a higher seq already acknowledged here. */
  private sendAck(seq: number): void {
    this.ackedSeq = Math.max(this.ackedSeq, seq);
    this.send(msg({ case: "ack", value: { seq: BigInt(this.ackedSeq) } }));
  }

  /** Tells the agent to cancel, once per stream (a second cancel would only repeat the agent's note). */
  sendCancel(reason: string, graceMs = this.deps.stopGraceMs): void {
    if (this.cancelSent) return;
    this.cancelSent = true;
    this.send(msg({ case: "cancel", value: { reason, graceMs } }));
  }

  /** Records why the stream ends: an error of ours is sent to the agent; a broken connection has no one to tell. */
  private fail(thrown: unknown): void {
    // A message the agent sent that does not decode is bad input, not a broken connection.
    const decodeError = thrown instanceof PeerGone && thrown.cause instanceof ConnectError ? reclassifyDecodeError(thrown.cause, "hodei.v1.AgentMessage") : null;
    const isPeerGone = thrown instanceof PeerGone && decodeError?.code !== Code.InvalidArgument;
    const err = decodeError?.code === Code.InvalidArgument ? decodeError : thrown instanceof PeerGone ? thrown.cause : toError(thrown);
    const fields = { err, workerId: this.worker.id, jobId: this.worker.job_id, attempt: this.worker.attempt };
    if (isPeerGone && this.hasResult) {
      // The agent leaves at once after its result is acknowledged, cutting the stream: not a fault.
      this.deps.log.debug(fields, "agent left after its result");
      return;
    }
    if (!isPeerGone) this.failure ??= err;
    this.deps.log.warn(fields, isPeerGone ? "agent stream broke" : "agent stream ended with an error");
  }

  private async onHello(started: boolean): Promise<void> {
    // Each hello costs a dispatch (reads, the job's secrets opened): once per stream, as agents send it.
    if (this.hasHello) throw new InvalidInputError("hello: sent once per stream, as its first message; reconnect to say it again", "hello");
    this.hasHello = true;
    this.sendAck(this.worker.log_seq);
    if (started) return;
    const dispatch = await dispatchJob(this.deps, this.worker);
    if ("stop" in dispatch) {
      this.sendCancel(dispatch.stop);
      return;
    }
    this.worker = dispatch.worker;
    this.job = dispatch.job;
    this.send(msg({ case: "run", value: dispatch.run }));
  }

  private async onLogs(chunks: LogChunk[]): Promise<void> {
    const w = this.worker;
    if (this.hasResult) throw new ConflictError("the result of this attempt is recorded: no more log chunks are accepted on this stream");
    checkBatch(chunks);
    if (chunks.length === 0) return;
    const budget: LogBudget = {
      limitBytes: this.deps.logLimitBytes,
      systemAllowanceBytes: SYSTEM_ALLOWANCE_BYTES,
      marker: `\n[hodei] output truncated by the control plane: the log limit of ${this.deps.logLimitBytes} bytes was reached; further output is discarded\n`,
    };
    // Where the log stands, as this stream last left it (else as the worker row it holds says): the
    // append then needs no read of the row (a stale position costs it one more try, with the read).
    const position = this.stored ?? { logSeq: Number(w.log_seq), logBytes: Number(w.log_bytes), isTruncated: w.log_truncated === 1 };
    const outcome = await this.deps.store.logs.append(
      w.id,
      chunks.map((c) => ({ seq: Number(c.seq), stream: c.stream, data: c.data, timeMs: Number(c.timeMs) })),
      budget,
      AGENT_LOG_STATES,
      { jobId: w.job_id, attempt: w.attempt, ...position },
    );
    if (outcome.kind === "ended") throw new ConflictError(`this worker's attempt has ended (worker ${outcome.state}): log chunks are no longer accepted`);
    if (outcome.kind === "gap") {
      throw new InvalidInputError(`logs: chunk seq ${outcome.seq} does not follow seq ${outcome.logSeq}; chunks are numbered 1, 2, 3, ... without gaps`, "seq");
    }
    this.stored = { logSeq: outcome.logSeq, logBytes: outcome.logBytes, isTruncated: outcome.isTruncated };
    observeLogBytes(this.deps.metrics, w.provider, outcome.storedBytes);
    if (outcome.truncatedNow) this.deps.log.warn({ jobId: w.job_id, workerId: w.id, limitBytes: this.deps.logLimitBytes }, "agent sent more than the log limit; the log was cut");
    this.sendAck(outcome.logSeq);
    this.deps.logHub.notify(w.job_id);
  }

  private async onHeartbeat(): Promise<void> {
    const { store, clock } = this.deps;
    await store.workers.recordHeartbeat(this.worker.id, clock.nowMs());
  }

  private async onResult(result: JobResult): Promise<void> {
    const w = this.worker;
    if (this.hasResult) throw new InvalidInputError("result: already recorded on this stream; it is sent once (again only on a new stream, when its ack was lost)", "result");
    if (result.lastSeq < 0n || result.lastSeq > BigInt(MAX_SEQ)) throw new InvalidInputError(`result: lastSeq must be between 0 and ${MAX_SEQ}`, "lastSeq");
    if (result.signal !== "" && !SIGNAL_NAME.test(result.signal)) throw new InvalidInputError(`result: signal "${result.signal.slice(0, 32)}" is not a signal name (SIGKILL, SIGTERM, ...)`, "signal");
    // The error becomes the job's reason, which every job listing, webhook and trace carries.
    if (result.error.length > MAX_ERROR_CHARS) result = { ...result, error: `${result.error.slice(0, MAX_ERROR_CHARS)}… (${result.error.length - MAX_ERROR_CHARS} more characters cut by the control plane)` };
    try {
      if (result.interrupted) await this.recordInterrupted();
      else await this.recordResult(result);
    } catch (err) {
      this.deps.log.error({ err: toError(err), workerId: w.id, jobId: w.job_id, attempt: w.attempt }, "could not record the result; the agent sends it again");
      throw err;
    }
    this.hasResult = true;
    this.send(msg({ case: "resultAck", value: {} }));
    // The job may have ended: whoever follows its log (`hodei run`) learns it now, before its worker is destroyed.
    this.deps.logHub.notify(w.job_id, true);
    this.deps.reconciler.nudge();
  }

  private async recordResult(result: JobResult): Promise<void> {
    const { store, clock, log } = this.deps;
    const w = this.worker;
    const now = clock.nowMs();
    const lastSeq = Number(result.lastSeq);
    // Only what never changes is read from it (the timeout, the exit codes it retries): the row
    // this stream dispatched with serves, when it did.
    const job = this.job ?? (await store.jobs.get(w.job_id));
    // How far the log got, without a read when this stream's own last append covers lastSeq:
    // log_seq only grows, and once the agent sends its result no chunk after lastSeq can come to
    // set log_truncated (a resend on another stream only repeats seqs already counted here).
    // The retry path (below: a failure whose exit code the job retries) hands the row on: read it then.
    const isFailure = !result.canceled && !result.timedOut && (result.error !== "" || result.exitCode !== 0);
    const isRetry = isFailure && job !== undefined && isRetryableExit(result, job.retry_on_exit_codes);
    const stored = this.stored;
    const fresh =
      !isRetry && stored && stored.logSeq >= lastSeq
        ? { ...w, log_seq: stored.logSeq, log_truncated: stored.isTruncated ? 1 : 0 }
        : ((await store.workers.get(w.id)) ?? w);
    const logsComplete = fresh.log_seq >= lastSeq;
    let to: JobState;
    let reason: string;
    if (result.canceled) {
      to = "canceled";
      reason = "canceled";
    } else if (result.timedOut) {
      to = "timed_out";
      reason = `timed out after ${job?.timeout_seconds ?? "?"}s; the process tree was killed`;
    } else if (result.error) {
      to = "failed";
      reason = result.error;
    } else if (result.exitCode === 0) {
      to = "succeeded";
      reason = "";
    } else {
      to = "failed";
      reason = result.signal ? `the command was killed by ${result.signal}` : `the command exited with code ${result.exitCode}`;
    }
    // An error with a positive exit code explains how a command that ran ended (out of memory): its exit code stays.
    const exitCode = to === "succeeded" || (to === "failed" && (!result.error || result.exitCode > 0)) ? result.exitCode : null;
    const isLogTruncated = result.droppedBytes > 0n || fresh.log_truncated === 1;
    if (!logsComplete) log.warn({ jobId: w.job_id, workerId: w.id, lastSeq, received: fresh.log_seq }, "result arrived with log chunks missing; logs marked incomplete");
    if (to === "failed" && job && isRetryableExit(result, job.retry_on_exit_codes)) {
      // A retryable failure: the one retry path decides (a new attempt, or the job fails with this code).
      const ending = { exitCode: result.exitCode, isLogTruncated, isLogIncomplete: !logsComplete };
      await this.deps.reconciler.loseAttempt(fresh, reason, "exit_code", "exit_code", ending);
      return;
    }
    const ended = await store.attempts.end(
      w,
      to,
      now,
      {
        exit_code: exitCode,
        reason,
        finished_at: now,
        logs_truncated: isLogTruncated ? 1 : 0,
        logs_incomplete: logsComplete ? 0 : 1,
      },
      "",
      false,
      exitCode,
    );
    if (ended) {
      observeJobFinished(this.deps.metrics, w.provider, to, fresh.started_at, now);
      this.deps.reconciler.trace.jobEnded(ended);
      log.info({ jobId: w.job_id, workerId: w.id, state: to, exitCode, logsComplete }, "job finished");
    }
  }

  /**
   * The agent was stopped from outside (its provider: a daemon stopping, an eviction) and killed
   * the job: the attempt is the provider's loss, not the command's failure. An attempt that has
   * already ended (a cancel, our own destroy) is only acknowledged.
   */
  private async recordInterrupted(): Promise<void> {
    const { store } = this.deps;
    const w = this.worker;
    const fresh = await store.workers.get(w.id);
    const job = await store.jobs.get(w.job_id);
    const isWorking = fresh?.state === "registered" || fresh?.state === "running";
    const isInProgress = isWorking && job !== undefined && !isTerminal(job.state) && job.attempts === w.attempt;
    this.deps.log.warn({ jobId: w.job_id, workerId: w.id, isInProgress }, "agent reports it was stopped from outside");
    if (!fresh || !isInProgress) return;
    const reason = `the worker ${w.name} was stopped by its provider (${w.provider}) while the job ran; the command itself did not fail`;
    await this.deps.reconciler.loseAttempt(fresh, reason, "interrupted", "disruption");
  }
}

/** How a worker's agent is to start its job: its RunJob and the rows as dispatched, or why it is to stop instead. */
export type Dispatch = { run: RunJob; job: JobRow; worker: WorkerRow } | { stop: string };

/**
 * The one dispatch path, for Register's answer (run_in_answer) and for a stream's hello alike: the
 * job's secrets are opened, then a registered worker and its job move to running together (once),
 * and the RunJob is built. A worker already running (a repeated Register, a hello before the agent
 * started) gets its RunJob again. Never to a worker whose provider_resource_id is unknown.
 */
export async function dispatchJob(deps: WorkerServiceDeps, worker: WorkerRow): Promise<Dispatch> {
  const { store, clock } = deps;
  if (worker.provider_resource_id === null) throw new Error(`worker ${worker.id} has no provider_resource_id; refusing to dispatch`);
  // Opened before the dispatch: a job whose secrets do not open never starts.
  const opened = await openSecrets(deps, worker);
  if ("stop" in opened) return opened;
  // The job as the dispatch wrote it, else as openSecrets just read it: no read after a write.
  let job = opened.job;
  let w = worker;
  if (worker.state === "registered") {
    const dispatched = await store.attempts.dispatchReturning(worker, clock.nowMs());
    if (!dispatched) return { stop: "the job ended before it could start" };
    w = dispatched.worker;
    job = dispatched.job;
    observeDispatched(deps.metrics, dispatched.job, dispatched.worker, dispatched.worker.started_at ?? clock.nowMs());
    deps.logHub.notify(w.job_id);
    deps.log.info({ jobId: w.job_id, workerId: w.id }, "job dispatched");
  }
  if (!job || job.attempts !== w.attempt || isTerminal(job.state)) return { stop: "the job ended before it could start" };
  const run = create(RunJobSchema, {
    jobId: job.id,
    attempt: w.attempt,
    command: JSON.parse(job.command) as string[],
    script: job.script,
    env: withTraceparent(JSON.parse(job.env) as Record<string, string>, job, w.attempt),
    timeoutSeconds: job.timeout_seconds,
    logLimitBytes: BigInt(deps.logLimitBytes),
    heartbeatIntervalMs: deps.heartbeatIntervalMs,
    secrets: opened.secrets,
    // Resources: what the provider applied, for the top of the job's log and an out-of-memory reason.
    resourcesApplied: w.resources_applied,
    memoryMb: job.memory_mb,
  });
  return { run, job, worker: w };
}

/**
 * The job's secrets, opened for its RunJob: the RunJob is the only way a secret's value leaves the
 * control plane. When they do not open (the server's key changed, a row was damaged or is
 * missing) the attempt fails for good (retrying cannot help), and the answer says to stop.
 */
async function openSecrets(deps: WorkerServiceDeps, w: WorkerRow): Promise<{ secrets: Record<string, string>; job: JobRow | undefined } | { stop: string }> {
  const { store, secretBox, log } = deps;
  const job = await store.jobs.get(w.job_id);
  // An ended job has no secrets left; the checks after this tell its agent to stop.
  if (!job || isTerminal(job.state)) return { secrets: {}, job };
  const names = JSON.parse(job.secret_names) as string[];
  if (names.length === 0) return { secrets: {}, job };
  try {
    const sealed = await store.secrets.listOfJob(job.id);
    const missing = names.filter((name) => !sealed.some((s) => s.name === name));
    if (missing.length > 0) throw new SecretOpenError(`secret ${missing.map((n) => `"${n}"`).join(", ")} of job ${job.id} is not in the database`);
    return { secrets: Object.fromEntries(sealed.map((s) => [s.name, secretBox.open(job.id, s)])), job };
  } catch (err) {
    if (!(err instanceof SecretOpenError)) throw err;
    const reason = `the job's secrets cannot be opened: ${err.message}`;
    log.error({ jobId: job.id, workerId: w.id, reason }, "job secrets do not open; the job fails");
    await deps.reconciler.loseAttempt(w, reason, "secrets", "permanent");
    return { stop: reason };
  }
}

/**
 * The job's env plus TRACEPARENT (core/trace-context.ts), so that the command's own spans join the
 * job's trace; a TRACEPARENT the job's env sets itself wins (the user asked for it).
 */
function withTraceparent(env: Record<string, string>, job: JobRow, attempt: number): Record<string, string> {
  const traceparent = commandTraceparent(job, attempt);
  return traceparent && env.TRACEPARENT === undefined ? { ...env, TRACEPARENT: traceparent } : env;
}

/** Refuses what no agent may send, naming the bound. */
function checkBatch(chunks: LogChunk[]): void {
  if (chunks.length > MAX_BATCH_CHUNKS) throw new InvalidInputError(`logs: ${chunks.length} chunks in one batch; at most ${MAX_BATCH_CHUNKS}`, "chunks");
  let previous = 0n;
  for (const c of chunks) {
    if (c.seq <= 0n || c.seq > BigInt(MAX_SEQ)) throw new InvalidInputError(`logs: chunk seq ${c.seq} is out of range; seqs run from 1 to ${MAX_SEQ}`, "seq");
    if (previous !== 0n && c.seq !== previous + 1n) throw new InvalidInputError(`logs: chunk seq ${c.seq} follows ${previous} in one batch; a batch holds consecutive seqs`, "seq");
    if (c.data.byteLength > MAX_CHUNK_BYTES) throw new InvalidInputError(`logs: chunk ${c.seq} holds ${c.data.byteLength} bytes; at most ${MAX_CHUNK_BYTES} per chunk`, "data");
    if (!STREAMS.has(c.stream)) throw new InvalidInputError(`logs: chunk ${c.seq} has stream "${c.stream.slice(0, 32)}"; use stdout, stderr or system`, "stream");
    previous = c.seq;
  }
}

/** Reading the agent's messages failed: the connection broke (the agent died or cut the stream). */
class PeerGone extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}

/**
 * The messages of `source` until `signal` aborts (then it stops waiting for the next one). Each read
 * races the abort with a listener of its own, removed once the read settles: a race against one
 * promise pending for the stream's whole life would keep a reaction per message (about 350 bytes)
 * until the stream ended.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  try {
    while (!signal.aborted) {
      const next = await new Promise<IteratorResult<T>>((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        it.next().then(
          (result) => {
            signal.removeEventListener("abort", onAbort);
            resolve(result);
          },
          (err: unknown) => {
            signal.removeEventListener("abort", onAbort);
            reject(new PeerGone(toError(err)));
          },
        );
      });
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Not awaited: a read still pending on a dead peer must not hold this stream open.
    void it.return?.()?.catch(() => {});
  }
}
