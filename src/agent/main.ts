/**
 * The worker agent: redeems its OTP token (and gets its job in the answer, or else on the stream),
 * then holds one bidirectional stream to the control plane (reconnecting with its session if the
 * stream drops), runs the job, streams its output as acknowledged chunks, heartbeats, and reports
 * the result only once every chunk is acknowledged. It exits when the server has acknowledged the
 * result.
 *
 * Stopped from outside (SIGTERM: its provider stopping it, an eviction) it kills the job's tree,
 * flushes the logs, reports an interrupted result so the job is not blamed, waits briefly for its
 * acknowledgement and exits 143.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  AgentMessageSchema,
  type AgentMessage,
  type RegisterRequestSchema,
  type RegisterResponse,
  type RunJob,
  type ServerMessage,
  WorkerService,
} from "../gen/hodei/v1/worker_pb.js";
import { AsyncQueue } from "../core/async-queue.js";
import { type CommandOutcome, type PreparedShell, prepareShell, type RunningCommand, startCommand } from "./command.js";
import {
  type AgentConfig,
  type Assignment,
  endOnCrashWhile,
  jobMarkers,
  parseAssignment,
  readAgentConfig,
  readAssignmentFrom,
  takeAssignmentFromEnv,
} from "./config.js";
import { JOB_OOM_SCORE_ADJ, OomWatch, oomCountFileFor } from "./job-cgroup.js";
import { LogBuffer, wireChunk } from "./log-buffer.js";
import { Redactor } from "./redact.js";
import { createAgentTransport } from "./transport.js";
import { warmUp } from "./warm-up.js";

/**
 * Boot phases, in ms since the process started (performance.now()): `entry` is set by the bundle's
 * first line (scripts/build.mjs), `loaded` once every module of the bundle is evaluated (both the
 * moment main starts, and `snapshot` is 1, in a worker started from a startup snapshot). Logged
 * once, after the first Register answer, when HODEI_AGENT_BOOT_TRACE=1.
 */
const boot: Record<string, number> = { entry: (globalThis as { __hodeiEntryMs?: number }).__hodeiEntryMs ?? Number.NaN, loaded: performance.now() };

const AGENT_VERSION = "0.1.0";
const DNS_GIVE_UP_MS = 5000;
/** An idle (warm) agent pings this often to keep its connection to the control plane open. */
const WARM_PING_MS = 5000;
/** The job's output is cut into chunks of this size (the server accepts up to 256 KiB). */
const CHUNK_BYTES = 64 * 1024;
/**
 * One log batch holds at most this many chunks and about this many bytes (the server accepts 512
 * chunks, in a message of at most HODEI_MAX_MESSAGE_BYTES, at least 2 MiB). Output that keeps
 * coming is sent once a batch's worth is ready or when the flush interval ends, whichever is
 * first: the server stores each batch in one transaction and acknowledges it once.
 */
const BATCH_CHUNKS = 128;
const BATCH_BYTES = 1024 * 1024;
/**
 * Unacknowledged output above which the job's pipes pause (backpressure): several batches may be
 * on their way while the server stores one, so a fast job does not wait for each acknowledgement.
 */
const WINDOW_BYTES = 8 * 1024 * 1024;
/** After SIGTERM: time the job's tree gets before SIGKILL, and time to wait for the result's ack. */
const TERMINATE_GRACE_MS = 1000;
const TERMINATE_ACK_WAIT_MS = 2000;
/** The stream an agent registered on, open for its hello: what connectOnce continues with. */
interface OpenStream {
  outgoing: AsyncQueue<AgentMessage>;
  /** Its answers after `registered`. */
  responses: AsyncIterator<ServerMessage>;
  /** Aborts the stream (its open timer, dropConnection). */
  opening: AbortController;
}

/**
 * A stream an idle agent opened ahead of its assignment, its Register not yet sent: the assignment
 * then costs one message on it instead of a new stream (the client's and the server's set-up of a
 * call, measured 7 to 28 ms from a warm Docker agent's Register to the server's handler). `first`
 * is its first answer, asked for at once; it settles early only when the stream ends unused.
 */
interface ReadyStream extends OpenStream {
  first: Promise<IteratorResult<ServerMessage>>;
  isEnded: boolean;
}

/**
 * One Register attempt (the stream's first answer, or the unary call) gets at most this long (and
 * never past the register timeout): the server answers in milliseconds (one guarded UPDATE), so an
 * attempt without an answer by then is taken as lost (a server or a proxy that accepted the
 * connection and went silent) and retried on a new connection.
 * A retry is safe: the server honours a repeat from the same instance key.
 */
const REGISTER_ATTEMPT_MS = 10_000;
/** Answers to Register that say the token itself is refused: retrying cannot help. */
const REGISTER_REFUSALS = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.FailedPrecondition]);

function log(message: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Agent {
  private readonly client;
  private session: RegisterResponse | null = null;
  private outgoing: AsyncQueue<AgentMessage> | null = null;
  private job: RunningCommand | null = null;
  private runJob: RunJob | null = null;
  private logs: LogBuffer | null = null;
  /** The job's secrets (from RunJob), redacted from its output, system lines and failure reason. */
  private redactor = new Redactor([]);
  private outcome: CommandOutcome | null = null;
  private lastSentSeq = 0;
  private resultSent = false;
  private finished = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private paused = false;
  private assignment: Assignment | null = null;
  private interrupted = false;
  private onResultAck: () => void = () => {};
  private readonly resultAcked = new Promise<void>((resolve) => (this.onResultAck = resolve));
  /**
   * Proves to the server that a repeated Register (its first answer lost to a server failure) comes
   * from this same process. Kept in memory only: never in the environment, argv or a log line.
   */
  private readonly instanceKey = randomBytes(32).toString("base64url");

  /** Closes the connection to the control plane, so the next call dials anew (transport.ts). */
  private readonly dropConnection: (reason: Error) => void;

  constructor(private readonly config: AgentConfig) {
    const { transport, dropConnection } = createAgentTransport(config);
    this.client = createClient(WorkerService, transport);
    this.dropConnection = dropConnection;
  }

  /** While idle: open the connection to the control plane, warm the call path and prepare the job's shell ahead of the assignment. */
  preconnect(): void {
    this.shell = prepareShell(this.config.baseEnv);
    // The container's OOM count file does not change: found now (a read of /proc/self/cgroup and
    // of each candidate), so that the job's start reads only its count.
    this.ownOomFile = oomCountFileFor(undefined, this.config.markers.HODEI_PROVIDER);
    // Also the agent's first log line, which costs about 2 ms (stderr's first write, the clock's
    // time zone): paid now rather than on the job's path, where "registered" would be the first.
    log("idle: waiting for an assignment on stdin");
    void this.client.ping({}, { timeoutMs: WARM_PING_MS }).then(
      () => void (boot.connected = performance.now()),
      (err: unknown) => log("control plane not reachable yet", { error: ConnectError.from(err).message }),
    );
    // The server closes HTTP/2 connections idle for a while (HODEI_HTTP2_IDLE_TIMEOUT_MS, 15 s by
    // default): a ping now and then keeps a warm agent's connection open until its assignment.
    this.keepWarm = setInterval(() => void this.client.ping({}, { timeoutMs: WARM_PING_MS }).catch(() => {}), WARM_PING_MS);
    this.keepWarm.unref();
    this.openReady();
  }

  /** The stream opened ahead of the assignment (openReady), while it is usable; taken by the Register. */
  private ready: ReadyStream | null = null;
  private readyTimer: NodeJS.Timeout | null = null;

  /**
   * While idle: opens the stream the Register will go on. The server ends a stream that sends no
   * Register within its request timeout (15 s by default); an ended one is opened again at once, or
   * after WARM_PING_MS when it lasted under a second (a server that refuses it, or none there).
   */
  private openReady(): void {
    this.readyTimer = null;
    if (this.assignment || this.isUnaryRegister) return;
    const openedAt = Date.now();
    const ready = this.openStream();
    const { outgoing, opening } = ready;
    this.ready = ready;
    const onEnd = (result: unknown) => {
      ready.isEnded = true;
      // Taken by the Register: its answer (or failure) is the Register's to read.
      if (this.ready !== ready) return;
      this.ready = null;
      outgoing.close();
      opening.abort();
      const error = result instanceof Error ? ConnectError.from(result) : null;
      // A control plane of an earlier release: every stream needs a session; Register is the unary call.
      if (error?.code === Code.Unauthenticated && error.rawMessage.startsWith("missing session")) {
        this.isUnaryRegister = true;
        return;
      }
      if (this.assignment) return;
      this.readyTimer = setTimeout(() => this.openReady(), Date.now() - openedAt < 1000 ? WARM_PING_MS : 0);
      this.readyTimer.unref();
    };
    ready.first.then(onEnd, onEnd);
  }

  /** A new stream without a session, its first answer asked for at once: the Register goes on it. */
  private openStream(): ReadyStream {
    const outgoing = new AsyncQueue<AgentMessage>();
    const opening = new AbortController();
    const responses = this.client.connect(outgoing, { signal: opening.signal })[Symbol.asyncIterator]();
    return { outgoing, responses, opening, first: responses.next(), isEnded: false };
  }

  /** The stream opened ahead, if it is still open; it is then the Register's. */
  private takeReady(): ReadyStream | null {
    if (this.readyTimer) clearTimeout(this.readyTimer);
    this.readyTimer = null;
    const ready = this.ready;
    this.ready = null;
    return ready && !ready.isEnded ? ready : null;
  }

  private keepWarm: NodeJS.Timeout | null = null;
  /** The OOM count file of the agent's own cgroup (job-cgroup.ts), found while idle; "" when none. */
  private ownOomFile: string | undefined;
  /** The job's shell, started while the agent waited for its assignment (command.ts); used once. */
  private shell: PreparedShell | undefined;

  assign(assignment: Assignment): void {
    if (this.keepWarm) clearInterval(this.keepWarm);
    this.assignment = assignment;
    mkdirSync(assignment.workDir, { recursive: true });
    process.chdir(assignment.workDir);
  }

  /** Set when the control plane does not take a Register on the stream (a server of an earlier release): the unary call then. */
  private isUnaryRegister = false;

  /**
   * Registers with the OTP token, retrying until the register timeout unless refused. The Register
   * goes on the worker's stream (its first message, answered by the stream's first), which then
   * carries the session: the stream is returned with the answer, and the job starts meanwhile.
   */
  async register(): Promise<{ session: RegisterResponse; stream?: OpenStream }> {
    const deadline = Date.now() + this.config.registerTimeoutMs;
    let delayMs = 50;
    let lastLogMs = 0;
    let unresolvedSince: number | undefined;
    boot.register = performance.now();
    for (;;) {
      // Every call has a time limit of its own, so register() settles by its deadline even when
      // the server never answers: the deadline is otherwise checked only after a call failed.
      const attemptMs = Math.max(1, Math.min(REGISTER_ATTEMPT_MS, deadline - Date.now()));
      try {
        const request = {
          otpToken: this.assignment!.otpToken,
          hostname: hostname(),
          agentVersion: AGENT_VERSION,
          instanceKey: this.instanceKey,
          runInAnswer: true,
        };
        const registered = this.isUnaryRegister ? { session: await this.client.register(request, { timeoutMs: attemptMs }) } : await this.registerOnStream(request, attemptMs);
        this.traceBoot();
        return registered;
      } catch (err) {
        this.traceBoot();
        const error = ConnectError.from(err);
        if (!this.isUnaryRegister && error.code === Code.Unauthenticated && error.rawMessage.startsWith("missing session")) {
          // A control plane of an earlier release asks every stream for a session: register by the call.
          this.isUnaryRegister = true;
          continue;
        }
        const isUnanswered = error.code === Code.DeadlineExceeded;
        // Waiting on the same connection cannot help a call that got no answer: the next dials anew.
        if (isUnanswered) this.dropConnection(error);
        const reason = isUnanswered ? `no answer in ${attemptMs} ms (register timeout ${this.config.registerTimeoutMs} ms)` : error.message;
        // A name that does not resolve rarely starts resolving: give up after a few seconds, so the
        // attempt fails with that reason instead of waiting out the whole registration deadline.
        if (/ENOTFOUND|EAI_AGAIN/.test(error.message)) {
          unresolvedSince ??= Date.now();
          if (Date.now() - unresolvedSince > DNS_GIVE_UP_MS) {
            throw new Error(`cannot resolve the control plane's host in ${this.config.serverUrl}: ${error.message}`, { cause: err });
          }
        }
        // Anything but a refusal of the token is the transport or a server in trouble (also a call
        // cut off by a server that died: aborted, canceled): retry until the register timeout.
        // A server that consumed the token before dying honours the retry by our instance key.
        if (REGISTER_REFUSALS.has(error.code) || Date.now() + delayMs > deadline) {
          throw new Error(`register with ${this.config.serverUrl} failed: ${reason}`, { cause: err });
        }
        if (Date.now() - lastLogMs > 2000) {
          lastLogMs = Date.now();
          log("cannot register with the control plane yet; retrying", { serverUrl: this.config.serverUrl, error: reason });
        }
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, 2000);
      }
    }
  }

  /** Logs the boot phases once (HODEI_AGENT_BOOT_TRACE=1). */
  private traceBoot(): void {
    if (!this.config.bootTrace || boot.registered !== undefined) return;
    boot.registered = performance.now();
    const fields = Object.fromEntries(Object.entries(boot).map(([k, v]) => [k, Math.round(v * 10) / 10]));
    log("boot phases (ms since the process started)", fields);
  }

  /**
   * Opens the worker's stream without a session and registers on it: its first message is the
   * Register, the server's first is the answer. The stream stays open for the hello (connectOnce).
   */
  private async registerOnStream(request: MessageInitShape<typeof RegisterRequestSchema>, attemptMs: number): Promise<{ session: RegisterResponse; stream: OpenStream }> {
    const { outgoing, responses, opening, first: answer } = this.takeReady() ?? this.openStream();
    outgoing.push(create(AgentMessageSchema, { kind: { case: "register", value: request } }));
    const timer = setTimeout(() => opening.abort(new ConnectError(`no answer in ${attemptMs} ms`, Code.DeadlineExceeded)), attemptMs);
    try {
      const first = await answer;
      if (first.done || first.value.kind.case !== "registered") {
        throw new ConnectError(`the control plane answered the stream's register with ${first.done ? "its end" : (first.value.kind.case ?? "an empty message")}`, Code.Internal);
      }
      return { session: first.value.kind.value, stream: { outgoing, responses, opening } };
    } catch (err) {
      outgoing.close();
      opening.abort();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async run(): Promise<void> {
    const registered = await this.register();
    this.session = registered.session;
    log("registered", { workerId: this.session.workerId, jobId: this.session.jobId, attempt: this.session.attempt });
    // The job came in the answer: it starts now, and its hello says so (on the stream registered
    // on; after a unary Register, on one that connects meanwhile: the output waits for it).
    // Otherwise it comes on the stream.
    if (this.session.run) this.start(this.session.run);
    let lostSince: number | null = null;
    let delayMs = 100;
    let opened = registered.stream;
    while (!this.finished) {
      try {
        const stream = opened;
        opened = undefined;
        await this.connectOnce(() => {
          lostSince = null;
          delayMs = 100;
        }, stream);
      } catch (err) {
        const error = ConnectError.from(err);
        // Refused (session unknown, attempt ended) or told we broke the protocol: reconnecting cannot help.
        if ([Code.Unauthenticated, Code.FailedPrecondition, Code.NotFound, Code.InvalidArgument].includes(error.code)) {
          log("session refused; giving up", { error: error.message });
          this.abandon(`the control plane refused this worker's session: ${error.message}`);
          return;
        }
        if (!this.finished) log("stream lost", { error: error.message });
      }
      if (this.finished) break;
      lostSince ??= Date.now();
      if (Date.now() - lostSince > this.config.reconnectWindowMs) {
        this.abandon("the control plane could not be reached within the reconnect window");
        return;
      }
      await sleep(delayMs);
      delayMs = Math.min(delayMs * 2, 2000);
    }
  }

  /** One stream: `opened` (the one registered on) or a new one with the session; returns when it ends. */
  private async connectOnce(onConnected: () => void, opened?: OpenStream): Promise<void> {
    const outgoing = opened?.outgoing ?? new AsyncQueue<AgentMessage>();
    this.outgoing = outgoing;
    this.resultSent = false;
    // Everything not yet acknowledged is resent on a new stream; the server ignores duplicates.
    this.lastSentSeq = this.logs ? (this.logs.unacknowledged()[0]?.seq ?? this.logs.lastSeq + 1) - 1 : 0;
    outgoing.push(create(AgentMessageSchema, { kind: { case: "hello", value: { started: this.runJob !== null, lastSeq: BigInt(this.logs?.lastSeq ?? 0) } } }));
    const heartbeatMs = this.session!.heartbeatIntervalMs || 5000;
    const heartbeat = setInterval(() => {
      outgoing.push(create(AgentMessageSchema, { kind: { case: "heartbeat", value: { timeMs: BigInt(Date.now()) } } }));
    }, heartbeatMs);
    // The server acknowledges the hello at once. A stream with no answer within the keep-alive's
    // bound never opened (a dial or a TLS handshake that hangs, which no PING covers, or a server
    // that went silent): it is given up, on a new connection next time.
    const openLimitMs = this.config.pingIntervalMs + this.config.pingTimeoutMs;
    const opening = opened?.opening ?? new AbortController();
    const openTimer = setTimeout(() => {
      const error = new ConnectError(`no answer from the control plane in ${openLimitMs} ms`, Code.DeadlineExceeded);
      opening.abort(error);
      this.dropConnection(error);
    }, openLimitMs);
    try {
      const responses: AsyncIterable<ServerMessage> = opened
        ? { [Symbol.asyncIterator]: () => opened.responses }
        : this.client.connect(outgoing, { headers: { authorization: `Bearer ${this.session!.sessionToken}` }, signal: opening.signal });
      let first = true;
      for await (const message of responses) {
        if (first) {
          first = false;
          clearTimeout(openTimer);
          onConnected();
          this.pump();
        }
        switch (message.kind.case) {
          case "run":
            this.start(message.kind.value);
            break;
          case "cancel":
            this.cancel(message.kind.value.reason, message.kind.value.graceMs || 5000);
            break;
          case "ack":
            this.logs?.acknowledge(Number(message.kind.value.seq));
            if (this.paused && this.logs && !this.logs.shouldPause()) {
              this.paused = false;
              this.job?.resume();
            }
            this.maybeSendResult();
            break;
          case "resultAck":
            // Done: leave at once (returning cancels the stream) rather than wait for it to wind down.
            this.finished = true;
            this.onResultAck();
            outgoing.close();
            return;
        }
      }
    } finally {
      clearTimeout(openTimer);
      clearInterval(heartbeat);
      outgoing.close();
      if (this.outgoing === outgoing) this.outgoing = null;
    }
  }

  private start(run: RunJob): void {
    if (this.runJob) return; // A resend after reconnect: already running.
    this.runJob = run;
    this.redactor = new Redactor(Object.values(run.secrets));
    this.logs = new LogBuffer({ limitBytes: Number(run.logLimitBytes) || 16 * 1024 * 1024, chunkBytes: CHUNK_BYTES, windowBytes: WINDOW_BYTES, redactor: this.redactor });
    // Secrets reach the job's processes as environment variables, and only them: never the agent's
    // own environment, argv or a log line of the agent.
    const env = { ...this.config.baseEnv, ...run.env, ...run.secrets, ...jobMarkers(this.config, this.assignment!) };
    log("job started", { jobId: run.jobId, attempt: run.attempt });
    // Resources: say how the limits apply (or that they do not), and watch for the OOM killer.
    if (run.resourcesApplied) this.logs.system(`[hodei] resources: ${run.resourcesApplied}\n`);
    const oom = new OomWatch(this.assignment!.cgroup?.oomCount || (this.ownOomFile ?? oomCountFileFor(undefined, this.config.markers.HODEI_PROVIDER)));
    this.job = startCommand(
      {
        command: run.command,
        script: run.script,
        env,
        workDir: run.workingDir || this.assignment!.workDir,
        timeoutSeconds: run.timeoutSeconds,
        cgroupProcs: this.assignment!.cgroup?.procs,
        oomScoreAdj: run.memoryMb > 0 ? JOB_OOM_SCORE_ADJ : undefined,
      },
      (stream, data) => this.onOutput(stream, data),
      this.shell,
    );
    this.shell = undefined;
    void this.job.done
      .then((outcome) => this.onJobDone(run, oom, outcome))
      .catch((err: unknown) => this.onFinishFailed(err));
  }

  /** The job's process tree is gone: its output completed, then the result after the last chunk. */
  private onJobDone(run: RunJob, oom: OomWatch, outcome: CommandOutcome): void {
    if (outcome.exitCode !== 0 && !outcome.canceled && !outcome.timedOut && !outcome.error && oom.wasKilled()) {
      const limit = run.memoryMb > 0 ? `its memory limit of ${run.memoryMb} MiB` : "the memory available to it";
      outcome.error = `the command was killed for running out of memory: it needed more than ${limit} (the kernel's OOM killer, exit code ${outcome.exitCode})`;
    }
    this.outcome = outcome;
    // The output is complete: what was held back as a possible start of a secret goes out now.
    this.logs!.end();
    if (outcome.timedOut) this.logs!.system(`\n[hodei] timed out after ${run.timeoutSeconds}s; the process tree was killed\n`);
    if (outcome.error) this.logs!.system(`\n[hodei] ${outcome.error}\n`);
    this.logs!.flush();
    this.pump();
    this.maybeSendResult();
  }

  /**
   * Finishing the job threw (a bug of the agent's, not the job's): the job fails with that reason
   * rather than the attempt vanishing with a crashed agent (which the control plane would retry as
   * an infrastructure loss, and which would fail the same way again).
   */
  private onFinishFailed(err: unknown): void {
    const reason = `the agent failed while reporting the job's end: ${err instanceof Error ? err.message : String(err)}`;
    log("finishing the job failed", { error: reason });
    try {
      const now = Date.now();
      this.outcome = { ...(this.outcome ?? { exitCode: -1, signal: "", timedOut: false, canceled: false, startedAtMs: now, finishedAtMs: now }), error: reason };
      this.maybeSendResult();
    } catch (again) {
      log("reporting that failure failed too; giving up on the attempt", { error: again instanceof Error ? again.message : String(again) });
      this.abandon(reason);
    }
  }

  private cancel(reason: string, graceMs: number): void {
    log("cancel received", { reason });
    if (this.job && !this.outcome) {
      this.logs!.system(`\n[hodei] canceled: ${reason}\n`);
      this.job.cancel(graceMs);
      return;
    }
    if (!this.job) {
      // Canceled before the job reached us: report at once.
      this.logs ??= new LogBuffer({ limitBytes: 1024, chunkBytes: 1024, windowBytes: 1024 });
      const now = Date.now();
      this.outcome = { exitCode: -1, signal: "", timedOut: false, canceled: true, error: "", startedAtMs: now, finishedAtMs: now };
      this.maybeSendResult();
    }
  }

  private onOutput(stream: string, data: Buffer): void {
    const logs = this.logs!;
    // Full chunks wait for a batch's worth (or the flush timer below), so a busy job's output
    // goes out in few, large batches.
    if (logs.append(stream, data) && logs.bytesAfter(this.lastSentSeq) >= BATCH_BYTES) this.pump();
    // The first output after a quiet spell goes out at once; output that keeps coming is batched.
    if (!this.flushTimer) {
      logs.flush();
      this.pump();
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        logs.flush();
        this.pump();
      }, this.config.flushIntervalMs);
    }
    if (!this.paused && logs.shouldPause()) {
      this.paused = true;
      this.job?.pause();
    }
  }

  /** Sends every chunk not yet sent on the current stream, in batches within the server's bounds. */
  private pump(): void {
    if (!this.outgoing || !this.logs) return;
    const chunks = this.logs.chunksAfter(this.lastSentSeq);
    for (let start = 0; start < chunks.length; ) {
      let end = start;
      let bytes = 0;
      while (end < chunks.length && end - start < BATCH_CHUNKS && (end === start || bytes + chunks[end].data.length <= BATCH_BYTES)) {
        bytes += chunks[end].data.length;
        end++;
      }
      const batch = chunks.slice(start, end);
      this.lastSentSeq = batch[batch.length - 1].seq;
      this.outgoing.push(
        create(AgentMessageSchema, {
          kind: {
            case: "logs",
            value: { chunks: batch.map(wireChunk) },
          },
        }),
      );
      start = end;
    }
  }

  /**
   * The result follows the last log chunk on the same ordered stream: the server stores every chunk
   * before it reads the result, and checks that chunks 1..lastSeq are all there. After a reconnect,
   * unacknowledged chunks are resent first, then the result again.
   */
  private maybeSendResult(): void {
    const outcome = this.outcome;
    if (!outcome || this.resultSent || !this.outgoing || !this.logs) return;
    this.logs.flush();
    this.pump();
    this.resultSent = true;
    this.outgoing.push(
      create(AgentMessageSchema, {
        kind: {
          case: "result",
          value: {
            exitCode: outcome.exitCode,
            signal: outcome.signal,
            timedOut: outcome.timedOut,
            canceled: outcome.canceled,
            // It becomes the job's reason: redacted like the output it may quote.
            error: this.redactor.redactText(outcome.error),
            lastSeq: BigInt(this.logs.lastSeq),
            droppedBytes: BigInt(this.logs.droppedBytes),
            startedAtMs: BigInt(outcome.startedAtMs),
            finishedAtMs: BigInt(outcome.finishedAtMs),
            interrupted: this.interrupted,
          },
        },
      }),
    );
  }

  /** Gives up on the attempt: kill the job's tree and leave. */
  private abandon(reason: string): void {
    log("abandoning attempt", { reason });
    this.job?.cancel(1000);
    this.finished = true;
  }

  get isInterrupted(): boolean {
    return this.interrupted;
  }

  /**
   * SIGTERM from outside (the provider stopping this worker, an eviction): take the job's tree down
   * with us, flush its logs and report an interrupted result (the command did not fail on its own),
   * then give the server a moment to acknowledge it. The caller exits 143 after.
   */
  async terminate(): Promise<void> {
    this.interrupted = true;
    log("stopped from outside; killing the job's process tree and reporting");
    if (!this.session) return; // Not registered: there is no one to report to.
    if (this.job && !this.outcome) {
      this.logs!.system("\n[hodei] the worker was stopped from outside (SIGTERM); the job's process tree was killed\n");
      this.job.cancel(TERMINATE_GRACE_MS);
      // The job's end flushes the logs and sends the result (see start()).
      await Promise.race([this.job.done, sleep(TERMINATE_GRACE_MS + 1000)]);
    } else if (!this.outcome) {
      // Stopped before the job reached us: report that at once.
      this.logs ??= new LogBuffer({ limitBytes: 1024, chunkBytes: 1024, windowBytes: 1024 });
      const now = Date.now();
      this.outcome = { exitCode: -1, signal: "", timedOut: false, canceled: false, error: "", startedAtMs: now, finishedAtMs: now };
      this.maybeSendResult();
    }
    await Promise.race([this.resultAcked, sleep(TERMINATE_ACK_WAIT_MS)]);
  }
}

async function main(): Promise<void> {
  // The agent's log is diagnostics only: a write that fails (a full disk under a local agent's log
  // file, a closed pipe) must not end the agent and its job.
  process.stderr.on("error", () => {});
  let config: AgentConfig;
  try {
    config = readAgentConfig(process.env);
  } catch (err) {
    log("agent misconfigured", { error: (err as Error).message });
    process.exit(2);
  }
  const agent = new Agent(config);
  try {
    let assignment = takeAssignmentFromEnv(process.env);
    if (!assignment) {
      agent.preconnect();
      const line = await endOnCrashWhile(readAssignmentFrom(0, () => process.stdin), log);
      boot.assigned = performance.now();
      if (line === null) {
        // Released while idle (a warm local agent), or a container whose one delivery was cut off.
        log("stdin closed before an assignment arrived; exiting");
        process.exit(0);
      }
      assignment = parseAssignment(line);
    }
    agent.assign(assignment);
  } catch (err) {
    log("bad assignment", { error: (err as Error).message });
    process.exit(2);
  }
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      void agent
        .terminate()
        .catch((err: unknown) => log("reporting the stop failed", { error: err instanceof Error ? err.message : String(err) }))
        .finally(() => process.exit(143));
    });
  }
  try {
    await agent.run();
    process.exit(agent.isInterrupted ? 143 : 0);
  } catch (err) {
    log("agent failed", { error: (err as Error).message });
    process.exit(1);
  }
}

/**
 * Run as a startup snapshot's bundle (scripts/agent-snapshot.cjs), main waits for the worker that
 * deserializes the snapshot: boot.entry and boot.loaded are then that moment. Otherwise it runs now.
 */
const snapshot = (globalThis as { __hodeiSnapshot?: { setMain(main: () => void, warmUp: () => Promise<void>): void } }).__hodeiSnapshot;
if (snapshot) {
  snapshot.setMain(() => {
    boot.entry = boot.loaded = performance.now();
    boot.snapshot = 1;
    void main();
  }, warmUp);
} else {
  void main();
}
