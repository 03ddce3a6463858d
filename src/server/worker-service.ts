/**
 * The worker protocol's server side.
 *
 * Register: consumes the OTP token in one guarded statement and resolves the worker, job, attempt
 * and provider_resource_id from the token row, never from what the agent reports.
 *
 * Connect: one stream per agent connection, authenticated by the session. The job is dispatched
 * here (never to a worker whose provider_resource_id is unknown); log chunks are stored, then
 * acknowledged; the result is recorded only after checking every chunk up to its last one is
 * stored. A stream that closes without a result makes the reconcile pass look at the worker.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ConflictError, UnauthenticatedError, UnavailableError } from "../core/errors.js";
import { isTerminal, type JobState } from "../core/job-state.js";
import { hashToken, mintSessionToken } from "../core/token.js";
import {
  type AgentMessage,
  type JobResult,
  PingResponseSchema,
  RegisterResponseSchema,
  type ServerMessage,
  ServerMessageSchema,
  WorkerService,
} from "../gen/hodei/v1/worker_pb.js";
import { AsyncQueue } from "../core/async-queue.js";
import type { WorkerRow } from "../store/schema.js";
import type { ServiceDeps } from "./service-deps.js";

export interface WorkerServiceDeps extends ServiceDeps {
  heartbeatIntervalMs: number;
  logLimitBytes: number;
}

/** The streams connected to this process, by worker id: how a cancel reaches an agent at once. */
export class SessionRegistry {
  private readonly streams = new Map<string, AsyncQueue<ServerMessage>>();

  attach(workerId: string, queue: AsyncQueue<ServerMessage>): void {
    this.streams.get(workerId)?.close();
    this.streams.set(workerId, queue);
  }

  detach(workerId: string, queue: AsyncQueue<ServerMessage>): void {
    if (this.streams.get(workerId) === queue) this.streams.delete(workerId);
  }

  /** True if the worker is connected here and the cancel was queued to it. */
  cancel(workerId: string, reason: string, graceMs: number): boolean {
    const queue = this.streams.get(workerId);
    queue?.push(create(ServerMessageSchema, { kind: { case: "cancel", value: { reason, graceMs } } }));
    return queue !== undefined;
  }

  closeAll(): void {
    for (const queue of this.streams.values()) queue.close();
    this.streams.clear();
  }
}

const msg = (kind: MessageInitShape<typeof ServerMessageSchema>["kind"]) => create(ServerMessageSchema, { kind });

export function createWorkerService(deps: WorkerServiceDeps): ServiceImpl<typeof WorkerService> {
  const { store, clock, log } = deps;

  async function register(req: { otpToken: string; hostname: string; agentVersion: string }) {
    const hash = hashToken(req.otpToken);
    const now = clock.nowMs();
    const token = await store.tokens.consume(hash, now);
    if (!token) {
      const known = await store.tokens.getByHash(hash);
      if (!known) throw new UnauthenticatedError("unknown OTP token");
      if (known.consumed_at !== null) throw new UnauthenticatedError("OTP token already used: a worker registers once");
      if (known.expires_at <= now) throw new UnauthenticatedError("OTP token expired: the worker did not register before its deadline");
      throw new UnavailableError("worker not recorded yet; retry shortly");
    }
    const session = mintSessionToken();
    // Identity comes from the token row; the reported hostname is kept for diagnostics only.
    const worker = await store.attempts.register(token.worker_id, hashToken(session), req.hostname.slice(0, 255), now);
    if (!worker) throw new UnauthenticatedError("this worker's attempt has already ended");
    log.info(
      { workerId: worker.id, jobId: worker.job_id, attempt: worker.attempt, providerResourceId: token.provider_resource_id, reportedHostname: req.hostname },
      "worker registered; provider_resource_id taken from the OTP token",
    );
    deps.metrics.startupSeconds.observe({ provider: worker.provider }, (now - worker.created_at) / 1000);
    return create(RegisterResponseSchema, {
      sessionToken: session,
      workerId: worker.id,
      jobId: worker.job_id,
      attempt: worker.attempt,
      heartbeatIntervalMs: deps.heartbeatIntervalMs,
    });
  }

  async function authenticate(ctx: HandlerContext): Promise<WorkerRow> {
    const header = ctx.requestHeader.get("authorization") ?? "";
    const session = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (!session) throw new UnauthenticatedError("missing session: send authorization: Bearer <session token>");
    const worker = await store.workers.getBySession(hashToken(session));
    if (!worker) throw new UnauthenticatedError("unknown session");
    if (worker.state !== "registered" && worker.state !== "running") {
      throw new ConflictError(`this worker's attempt has ended (worker ${worker.state})`);
    }
    return worker;
  }

  async function* connect(requests: AsyncIterable<AgentMessage>, ctx: HandlerContext): AsyncGenerator<ServerMessage> {
    const worker = await authenticate(ctx);
    const out = new AsyncQueue<ServerMessage>();
    deps.sessions.attach(worker.id, out);
    const stream = new AgentStream(worker, out, deps);
    const consuming = stream.consume(requests).finally(() => out.close());
    try {
      yield* out;
    } finally {
      out.close();
      deps.sessions.detach(worker.id, out);
      await consuming.catch(() => {});
      if (!stream.hasResult) deps.reconciler.suspect(worker.id);
    }
  }

  async function ping() {
    return create(PingResponseSchema, { serverTimeMs: BigInt(clock.nowMs()) });
  }

  return { ping, register, connect };
}

/** One agent connection: reacts to what the agent sends. */
class AgentStream {
  hasResult = false;
  private cancelSent = false;

  constructor(
    private worker: WorkerRow,
    private readonly out: AsyncQueue<ServerMessage>,
    private readonly deps: WorkerServiceDeps,
  ) {}

  async consume(requests: AsyncIterable<AgentMessage>): Promise<void> {
    try {
      for await (const message of requests) {
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
        }
      }
    } catch (err) {
      this.deps.log.debug({ err, workerId: this.worker.id }, "agent stream ended with an error");
    }
  }

  private async onHello(started: boolean): Promise<void> {
    const { store, clock } = this.deps;
    const w = this.worker;
    const maxSeq = await store.logs.maxSeq(w.job_id, w.attempt);
    this.out.push(msg({ case: "ack", value: { seq: BigInt(maxSeq) } }));
    if (started) return;
    if (w.provider_resource_id === null) throw new Error(`worker ${w.id} has no provider_resource_id; refusing to dispatch`);
    if (w.state === "registered") {
      const dispatched = await store.attempts.dispatch(w, clock.nowMs());
      if (!dispatched) {
        this.sendCancel("the job ended before it could start");
        return;
      }
      this.worker = (await store.workers.get(w.id)) ?? w;
      this.deps.logHub.notify(w.job_id);
      this.deps.log.info({ jobId: w.job_id, workerId: w.id }, "job dispatched");
    }
    const job = await store.jobs.get(w.job_id);
    if (!job || job.attempts !== w.attempt || isTerminal(job.state)) {
      this.sendCancel("the job ended before it could start");
      return;
    }
    this.out.push(
      msg({
        case: "run",
        value: {
          jobId: job.id,
          attempt: w.attempt,
          command: JSON.parse(job.command) as string[],
          script: job.script,
          env: JSON.parse(job.env) as Record<string, string>,
          timeoutSeconds: job.timeout_seconds,
          logLimitBytes: BigInt(this.deps.logLimitBytes),
          heartbeatIntervalMs: this.deps.heartbeatIntervalMs,
        },
      }),
    );
  }

  private async onLogs(chunks: { seq: bigint; stream: string; data: string; timeMs: bigint }[]): Promise<void> {
    if (chunks.length === 0) return;
    const w = this.worker;
    await this.deps.store.logs.append(
      w.job_id,
      w.attempt,
      chunks.map((c) => ({ seq: Number(c.seq), stream: c.stream.slice(0, 16), data: c.data, timeMs: Number(c.timeMs) })),
    );
    this.out.push(msg({ case: "ack", value: { seq: chunks[chunks.length - 1].seq } }));
    this.deps.logHub.notify(w.job_id);
  }

  private async onHeartbeat(): Promise<void> {
    const { store, clock } = this.deps;
    await store.workers.recordHeartbeat(this.worker.id, clock.nowMs());
    // The database is the truth: a cancel made on another replica reaches the agent here.
    const job = await store.jobs.get(this.worker.job_id);
    if (job && (isTerminal(job.state) || job.attempts !== this.worker.attempt)) this.sendCancel(job.reason || `job ${job.state}`);
  }

  private async onResult(result: JobResult): Promise<void> {
    const { store, clock, log } = this.deps;
    const w = this.worker;
    const now = clock.nowMs();
    const lastSeq = Number(result.lastSeq);
    const stored = await store.logs.count(w.job_id, w.attempt, lastSeq);
    const logsComplete = stored === lastSeq;
    let to: JobState;
    let reason: string;
    if (result.canceled) {
      to = "canceled";
      reason = "canceled";
    } else if (result.timedOut) {
      const job = await store.jobs.get(w.job_id);
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
    const exitCode = to === "succeeded" || (to === "failed" && !result.error) ? result.exitCode : null;
    const job = await store.attempts.end(
      w,
      to,
      now,
      {
        exit_code: exitCode,
        reason,
        finished_at: now,
        logs_truncated: result.droppedBytes > 0n ? 1 : 0,
        logs_incomplete: logsComplete ? 0 : 1,
      },
      "",
    );
    this.hasResult = true;
    if (job) {
      this.deps.metrics.jobsFinished.inc({ provider: w.provider, state: to });
      log.info({ jobId: w.job_id, workerId: w.id, state: to, exitCode, logsComplete }, "job finished");
    }
    if (!logsComplete) log.warn({ jobId: w.job_id, lastSeq, stored }, "result arrived with log chunks missing; logs marked incomplete");
    this.out.push(msg({ case: "resultAck", value: {} }));
    this.deps.logHub.notify(w.job_id);
    this.deps.reconciler.nudge();
  }

  private sendCancel(reason: string): void {
    if (this.cancelSent) return;
    this.cancelSent = true;
    this.out.push(msg({ case: "cancel", value: { reason, graceMs: this.deps.stopGraceMs } }));
  }
}
