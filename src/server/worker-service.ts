/**
 * The worker protocol's server side.
 *
 * Register: consumes the OTP token in one guarded statement and resolves the worker, job, attempt
 * and provider_resource_id from the token row, never from what the agent reports. A Register whose
 * answer was lost (the server died mid-call) may be repeated by the same agent process, proven by
 * its instance key, while the worker's stream has never connected and its registration deadline
 * has not passed: it gets a fresh session and the earlier one stops working. For anyone else the
 * token stays single-use. A refused Register costs its sender's address a growing delay
 * (register-limiter.ts); a valid token never waits.
 *
 * Connect: one stream per agent connection, authenticated by the session (agent-stream.ts reacts
 * to what the agent sends). The job is dispatched in Register's answer when the agent asks
 * (run_in_answer), else on the stream after its hello, by one function (dispatchJob), never to a
 * worker whose provider_resource_id is unknown; log chunks are checked and stored, then
 * acknowledged; the result is recorded only after checking every chunk up to its last one is
 * received. A stream
 * that closes without a result makes the reconcile pass look at the worker; one on which the agent
 * is silent past the heartbeat timeout is ended.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { ConflictError, InvalidInputError, toError, UnauthenticatedError, UnavailableError } from "../core/errors.js";
import { isTerminal } from "../core/job-state.js";
import { hashToken, mintSessionToken } from "../core/token.js";
import { type AgentMessage, PingResponseSchema, type RegisterResponse, RegisterResponseSchema, type ServerMessage, ServerMessageSchema, WorkerService } from "../gen/hodei/v1/worker_pb.js";
import type { Notifier } from "../store/notifier.js";
import type { JobRow, OtpTokenRow, WorkerRow } from "../store/schema.js";
import type { Store } from "../store/store.js";
import { observeRegistered } from "../scheduler/metrics.js";
import { AgentStream, dispatchJob } from "./agent-stream.js";
import { clientAddressKey } from "./client-address.js";
import type { RegisterLimiter } from "./register-limiter.js";
import type { ServiceDeps } from "./service-deps.js";

export interface WorkerServiceDeps extends ServiceDeps {
  heartbeatIntervalMs: number;
  /** A stream on which the agent sends nothing (not even a heartbeat) for longer is ended, ms. */
  heartbeatTimeoutMs: number;
  /**
   * A stream opened without a session whose register does not come within this long is ended, ms:
   * a request with no credential yet, bounded as one (HODEI_REQUEST_TIMEOUT_MS).
   */
  registerWaitMs: number;
  logLimitBytes: number;
  /** Slows down refused Registers, per client address. */
  registerLimiter: RegisterLimiter;
}

/** Sessions checked against the database this often, ms (a cancel or end made on another replica). */
export const SESSION_CHECK_MS = 250;
/** Jobs read per query of a session check. */
const SESSION_CHECK_BATCH = 500;

/**
 * The streams connected to this process, by worker id: how a cancel reaches an agent at once.
 * A cancel made on another replica (or an attempt ended there) reaches agents connected here by
 * polling, the truth: checkSessionsNow() reads the jobs of all of them in one indexed query every
 * SESSION_CHECK_MS; a hint (PostgreSQL NOTIFY) may call it sooner.
 */
export class SessionRegistry {
  private readonly streams = new Map<string, AgentStream>();
  /** Streams opened without a session, until their hello (an agent registering on its stream). */
  private readonly opening = new Set<OpeningStream>();
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;

  /** Without deps (tests of one process), checkSessionsNow() does nothing. */
  constructor(private readonly deps?: { store: Store; log: Logger }) {}

  /** Starts the periodic session check. */
  start(): void {
    this.timer ??= setInterval(() => void this.checkSessionsNow(), SESSION_CHECK_MS);
    this.timer.unref();
  }

  /**
   * Tells every agent connected here whose job has ended, or whose attempt is no longer the job's
   * (canceled, timed out, lost and queued again: on any replica), to stop. Concurrent calls share
   * one check. Never throws (a failed read is logged; the next check retries).
   */
  checkSessionsNow(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => (this.checking = null));
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    if (!this.deps || this.streams.size === 0) return;
    const streams = [...this.streams.values()];
    try {
      for (let i = 0; i < streams.length; i += SESSION_CHECK_BATCH) {
        const batch = streams.slice(i, i + SESSION_CHECK_BATCH);
        const jobs = await this.deps.store.jobs.getStates(batch.map((s) => s.jobId));
        for (const stream of batch) {
          const job = jobs.get(stream.jobId);
          if (!job) stream.sendCancel("the job was removed");
          else if (isTerminal(job.state) || job.state === "queued" || job.attempts !== stream.attempt) stream.sendCancel(job.reason || `job ${job.state}`);
        }
      }
    } catch (err) {
      this.deps.log.warn({ err: toError(err) }, "could not check the sessions' jobs; the next check retries");
    }
  }

  attach(stream: AgentStream): void {
    this.streams.get(stream.workerId)?.end();
    this.streams.set(stream.workerId, stream);
  }

  detach(stream: AgentStream): void {
    if (this.streams.get(stream.workerId) === stream) this.streams.delete(stream.workerId);
  }

  /** A stream that registers: bounded by the silence rule (endSilent) and ended by closeAll until its hello. */
  attachOpening(opening: OpeningStream): void {
    this.opening.add(opening);
  }

  detachOpening(opening: OpeningStream): void {
    this.opening.delete(opening);
  }

  /** True if the worker is connected here and the cancel was queued to it (once per stream). */
  cancel(workerId: string, reason: string, graceMs: number): boolean {
    const stream = this.streams.get(workerId);
    stream?.sendCancel(reason, graceMs);
    return stream !== undefined;
  }

  /**
   * A "cancel" hint (store/notifier.ts) from any replica runs the session check at once instead of
   * at its next tick; the check stays the truth (a hint may be lost). Returns the function that
   * stops listening.
   */
  followCancels(notifier: Notifier): () => void {
    return notifier.subscribe("cancel", () => void this.checkSessionsNow());
  }

  /** Ends every stream whose agent has been silent past the heartbeat timeout; returns how many. */
  endSilent(): number {
    let ended = 0;
    for (const stream of this.streams.values()) if (stream.endIfSilent()) ended++;
    for (const opening of this.opening) if (opening.endIfSilent()) ended++;
    return ended;
  }

  /**
   * Ends every stream (shutdown). With a reason, agents are told so with Unavailable, which they
   * treat as retryable: they reconnect (through the Service, to another replica) with their session.
   */
  closeAll(reason?: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const stream of this.streams.values()) {
      if (reason) stream.endWith(new UnavailableError(reason));
      else stream.end();
    }
    this.streams.clear();
    for (const opening of this.opening) opening.endWith(new UnavailableError(reason ?? "the control plane is shutting down"));
    this.opening.clear();
  }
}

/**
 * A stream opened without a session, while its agent registers on it: it waits for the register
 * (at most the register wait: no credential has been shown yet), then, after the answer, for the
 * hello (at most the heartbeat timeout, as a session's silence). Both count present time; past
 * either the stream ends (endIfSilent, by the registry's check).
 */
export class OpeningStream {
  private readonly stop = new AbortController();
  private sinceMs: number;
  private waitingFor: "register" | "hello" = "register";

  constructor(private readonly deps: Pick<WorkerServiceDeps, "clock" | "reconciler" | "heartbeatTimeoutMs" | "registerWaitMs">) {
    this.sinceMs = deps.clock.nowMs();
  }

  /** The stream's next message, or null when the agent closed it; throws when the stream is ended (silence, shutdown). */
  read(it: AsyncIterator<AgentMessage>, what: "register" | "hello"): Promise<AgentMessage | null> {
    this.waitingFor = what;
    this.sinceMs = this.deps.clock.nowMs();
    const signal = this.stop.signal;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener("abort", onAbort, { once: true });
      it.next().then(
        (result) => {
          signal.removeEventListener("abort", onAbort);
          resolve(result.done ? null : result.value);
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(toError(err));
        },
      );
    });
  }

  endIfSilent(): boolean {
    const silentMs = this.deps.reconciler.liveness.presentMsSince(this.sinceMs);
    const [limitMs, limitName] = this.waitingFor === "register" ? [this.deps.registerWaitMs, "register wait"] : [this.deps.heartbeatTimeoutMs, "heartbeat timeout"];
    if (silentMs <= limitMs || this.stop.signal.aborted) return false;
    this.endWith(new UnavailableError(`no ${this.waitingFor} from the agent for ${silentMs} ms (${limitName} ${limitMs} ms); stream closed`));
    return true;
  }

  endWith(error: Error): void {
    if (!this.stop.signal.aborted) this.stop.abort(error);
  }
}

/** `first`, then the rest of `it`: a stream's messages after the ones read before its session. */
function startingWith<T>(first: T, it: AsyncIterator<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let isFirstSent = false;
      return {
        next: () => {
          if (isFirstSent) return it.next();
          isFirstSent = true;
          return Promise.resolve({ value: first, done: false });
        },
        return: (value?: unknown) => it.return?.(value) ?? Promise.resolve({ value: undefined, done: true }),
      };
    },
  };
}

export function createWorkerService(deps: WorkerServiceDeps): ServiceImpl<typeof WorkerService> {
  const { store, clock, log } = deps;
  // Silence is checked this often on each stream (a comparison, no I/O).
  const silenceCheckMs = Math.max(250, Math.min(deps.heartbeatIntervalMs, deps.heartbeatTimeoutMs / 4));
  /** Checks a stream's silence every silenceCheckMs until the timer is cleared. */
  const watchSilence = (stream: { endIfSilent(): boolean }) => {
    const timer = setInterval(() => {
      deps.reconciler.liveness.beat(); // after a freeze, see the absence before judging the agent
      stream.endIfSilent();
    }, silenceCheckMs);
    timer.unref();
    return timer;
  };

  type RegisterRequest = { otpToken: string; hostname: string; agentVersion: string; instanceKey: string; runInAnswer: boolean };

  async function register(req: RegisterRequest, ctx: HandlerContext) {
    return (await registerChecked(req, ctx)).response;
  }

  /** The answer, and the job when it was dispatched in it (a stream registered on keeps it for the result). */
  async function registerChecked(req: RegisterRequest, ctx: HandlerContext): Promise<{ response: RegisterResponse; job?: JobRow }> {
    try {
      return await registerWithToken(req);
    } catch (err) {
      // Checked first, limited after: only a refused token makes its address wait.
      if (err instanceof UnauthenticatedError) await deps.registerLimiter.refuse(ctx.values.get(clientAddressKey));
      throw err;
    }
  }

  async function registerWithToken(req: RegisterRequest): Promise<{ response: RegisterResponse; job?: JobRow }> {
    const hash = hashToken(req.otpToken);
    const instanceKeyHash = req.instanceKey ? hashToken(req.instanceKey) : null;
    const now = clock.nowMs();
    const session = mintSessionToken();
    const hostname = req.hostname.slice(0, 255);
    let worker: WorkerRow | null;
    let token = (await store.tokens.consume(hash, now, instanceKeyHash)) ?? (await consumeAfterAbsence(hash, instanceKeyHash, now));
    if (token) {
      // Identity comes from the token row; the reported hostname is kept for diagnostics only.
      worker = await store.attempts.register(token.worker_id, hashToken(session), hostname, now);
      if (!worker) throw new UnauthenticatedError("this worker's attempt has ended");
      observeRegistered(deps.metrics, worker, now);
    } else {
      token = await explainRefusal(hash, instanceKeyHash, now);
      worker = await store.attempts.reRegister(token.worker_id, hashToken(session), hostname, now, presentNow(token.created_at));
      if (!worker) {
        throw new UnauthenticatedError(
          "OTP token already used: a repeated Register is honoured only before the worker's stream connects and before its registration deadline",
        );
      }
      log.warn({ workerId: worker.id, jobId: worker.job_id }, "repeated Register from the same agent honoured; its earlier session is revoked");
    }
    log.info(
      { workerId: worker.id, jobId: worker.job_id, attempt: worker.attempt, providerResourceId: token.provider_resource_id, reportedHostname: hostname },
      "worker registered; provider_resource_id taken from the OTP token",
    );
    if (worker.registered_at === now) deps.reconciler.trace.registered(worker); // a repeated Register keeps the first time: its span was emitted
    // The job in the answer, when the agent takes it there: otherwise (or when it is to stop, which
    // its stream then tells it) the job comes on the stream after its hello.
    const dispatch = req.runInAnswer && worker.provider_resource_id !== null ? await dispatchJob(deps, worker) : null;
    const dispatched = dispatch && "run" in dispatch ? dispatch : undefined;
    const response = create(RegisterResponseSchema, {
      sessionToken: session,
      workerId: worker.id,
      jobId: worker.job_id,
      attempt: worker.attempt,
      heartbeatIntervalMs: deps.heartbeatIntervalMs,
      run: dispatched?.run,
    });
    return { response, job: dispatched?.job };
  }

  /** Now, in present time since sinceMs: wall time minus the control plane's own absences. */
  function presentNow(sinceMs: number): number {
    return sinceMs + deps.reconciler.liveness.presentMsSince(sinceMs);
  }

  /**
   * A token past its expiry in wall time may still be good in present time: the control plane was
   * frozen or down while the agent tried to register, and that is not the agent's fault. Only a
   * token that still has its original expiry (the worker's registration deadline; a revoked token
   * has an earlier one) and whose worker still waits is taken then.
   */
  async function consumeAfterAbsence(hash: string, instanceKeyHash: string | null, now: number): Promise<OtpTokenRow | null> {
    const known = await store.tokens.getByHash(hash);
    if (!known || known.consumed_at !== null || known.expires_at > now) return null;
    deps.reconciler.liveness.beat(); // a Register read right after a freeze: see the absence first
    const worker = await store.workers.get(known.worker_id);
    if (worker?.state !== "waiting" || worker.registration_deadline_ms !== known.expires_at) return null;
    const present = presentNow(known.created_at);
    if (present >= known.expires_at) return null;
    log.info({ workerId: worker.id, jobId: worker.job_id }, "OTP token honoured past its wall-clock expiry: the control plane itself was absent meanwhile");
    return store.tokens.consume(hash, now, instanceKeyHash, present);
  }

  /**
   * Why a token was not consumed. Returns the token only for a repeat by the agent that consumed
   * it (same instance key); anything else is refused here.
   */
  async function explainRefusal(hash: string, instanceKeyHash: string | null, now: number): Promise<OtpTokenRow> {
    const known = await store.tokens.getByHash(hash);
    if (!known) throw new UnauthenticatedError("unknown OTP token");
    if (known.consumed_at !== null) {
      if (instanceKeyHash !== null && known.instance_key_hash === instanceKeyHash) return known;
      throw new UnauthenticatedError("OTP token already used: a worker registers once");
    }
    if (known.expires_at <= now) throw new UnauthenticatedError("OTP token expired: the worker did not register before its deadline");
    throw new UnavailableError("worker not recorded yet; retry shortly");
  }

  async function authenticate(session: string): Promise<WorkerRow> {
    if (!session) throw new UnauthenticatedError("missing session: send authorization: Bearer <session token>");
    const sessionHash = hashToken(session);
    // Records the first connection, which closes the window for a repeated Register.
    const worker = await store.attempts.connectStream(sessionHash, clock.nowMs());
    if (worker) return worker;
    const known = await store.workers.getBySession(sessionHash);
    if (!known) throw new UnauthenticatedError("unknown session");
    throw new ConflictError(`this worker's attempt has ended (worker ${known.state})`);
  }

  /**
   * A stream with a session (authorization: Bearer), or one on which the agent registers first:
   * register -> registered, then its hello opens the session here as the header would have. Until
   * that hello the session is not connected, so a Register whose answer was lost may be repeated.
   */
  async function* connect(requests: AsyncIterable<AgentMessage>, ctx: HandlerContext): AsyncGenerator<ServerMessage> {
    const header = ctx.requestHeader.get("authorization");
    let session = header?.startsWith("Bearer ") ? header.slice(7) : "";
    let messages = requests;
    let dispatchedJob: JobRow | undefined;
    if (header === null) {
      const it = requests[Symbol.asyncIterator]();
      const opening = new OpeningStream(deps);
      deps.sessions.attachOpening(opening);
      const silence = watchSilence(opening);
      try {
        const first = await opening.read(it, "register");
        if (!first) return;
        if (first.kind.case !== "register") {
          throw new InvalidInputError(`a stream without a session starts with register (or send authorization: Bearer <session token>); its first message was ${first.kind.case ?? "empty"}`, "register");
        }
        const { response: answer, job } = await registerChecked(first.kind.value, ctx);
        dispatchedJob = job;
        yield create(ServerMessageSchema, { kind: { case: "registered", value: answer } });
        const hello = await opening.read(it, "hello");
        if (!hello) return;
        if (hello.kind.case !== "hello") throw new InvalidInputError(`after registered the agent's next message is its hello; it sent ${hello.kind.case ?? "an empty message"}`, "hello");
        session = answer.sessionToken;
        messages = startingWith(hello, it);
      } finally {
        clearInterval(silence);
        deps.sessions.detachOpening(opening);
      }
    }
    const worker = await authenticate(session);
    const stream = new AgentStream(worker, deps, dispatchedJob);
    deps.sessions.attach(stream);
    const consuming = stream.consume(messages).finally(() => stream.out.close());
    const silence = watchSilence(stream);
    try {
      yield* stream.out;
      if (stream.failure) throw stream.failure;
    } finally {
      clearInterval(silence);
      stream.end();
      deps.sessions.detach(stream);
      await consuming;
      if (!stream.hasResult) deps.reconciler.suspect(worker.id);
    }
  }

  async function ping() {
    return create(PingResponseSchema, { serverTimeMs: BigInt(clock.nowMs()) });
  }

  return { ping, register, connect };
}
