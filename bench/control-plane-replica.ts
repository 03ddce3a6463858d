/**
 * The `control_plane` bench section's replicas and agents (bench/control-plane.ts): a replica is a
 * server child process (bench/control-plane-server.ts, or bench/control-plane-floor.ts for the
 * protocol's floor) with its agents' HTTP/2 connections; runAgent is the agent's side of one job.
 */
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AsyncQueue } from "../src/core/async-queue.js";
import { JobService } from "../src/gen/hodei/v1/api_pb.js";
import { type AgentMessage, AgentMessageSchema, WorkerService } from "../src/gen/hodei/v1/worker_pb.js";

export const at = () => performance.timeOrigin + performance.now();
const OUTPUT = new TextEncoder().encode("hello\n");

/** How a replica is started: its script (bundled), the bench provider's capacity, its agents' connections. */
export interface ReplicaOptions {
  script: string;
  maxWorkers: number;
  connections: number;
}

/** One job's times (epoch ms, high resolution), from this process and the replica's. */
export interface Trace {
  submitStart: number;
  submitEnd?: number;
  claimedAt?: number;
  provisionedAt?: number;
  tokenAt?: number;
  registeredAt?: number;
  runAt?: number;
  resultAckAt?: number;
  stoppedAt?: number;
  failed?: string;
  /** Register or stream calls the agent retried (unavailable: e.g. SQLite's lock held by another replica). */
  retries?: number;
}

export interface StatsMessage {
  type: "stats";
  at: number;
  cpu: NodeJS.CpuUsage;
  elu: { idle: number; active: number; utilization: number };
  statements: Record<string, { count: number; ms: number }>;
}

/** A replica: the server child process, its agents' connections, and the jobs it was given. */
export class Replica {
  readonly agentClients: Client<typeof WorkerService>[] = [];
  readonly api: Client<typeof JobService>;
  private next = 0;
  private statsWaiter: ((stats: StatsMessage) => void) | null = null;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly adminKey: string,
    private readonly transports: Transport[],
  ) {
    const apiTransport = createGrpcTransport({ baseUrl: url, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${adminKey}`), next(req))] });
    this.api = createClient(JobService, apiTransport);
    for (const t of transports) this.agentClients.push(createClient(WorkerService, t));
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.once("exit", (code, signal) => {
      if (!this.isStopping) console.error(`control_plane: a replica exited on its own (code ${code}, signal ${signal}); see its log`);
    });
  }

  /** `sharedAdminKey`: the key the replica that created the database wrote (the others find none in their own data directory). */
  static async start(options: ReplicaOptions, databaseUrl: string, dataDir: string, logFile: string, onMessage: (m: Record<string, unknown>) => void, sharedAdminKey = ""): Promise<Replica> {
    const log = openSync(logFile, "a");
    const child = fork(options.script, [], {
      // BENCH_CP_PROFILE=DIR: a CPU profile of each replica, written to DIR when it stops.
      execArgv: [...(process.env.BENCH_CP_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_CP_PROFILE] : [])],
      stdio: ["ignore", log, log, "ipc"],
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/root",
        HODEI_PORT: "0",
        HODEI_HOST: "127.0.0.1",
        HODEI_DATA_DIR: dataDir,
        HODEI_DATABASE_URL: databaseUrl,
        // Each replica is a node of its own: the bench provider's workers live in its memory.
        HODEI_NODE_ID: `bench-${dataDir.slice(-6)}`,
        BENCH_CP_MAX_WORKERS: String(options.maxWorkers),
        BENCH_CP_SQL_DETAIL: process.env.BENCH_CP_SQL_DETAIL ?? "",
      },
    });
    closeSync(log);
    const ready = await new Promise<{ url: string }>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`bench replica exited with ${code} before it was ready; see ${logFile}`)));
      child.on("message", (m: Record<string, unknown>) => {
        if (m.type === "ready") resolve(m as unknown as { url: string });
        else onMessage(m);
      });
    });
    const keyFile = join(dataDir, "admin.key");
    const adminKey = existsSync(keyFile) ? readFileSync(keyFile, "utf8").trim() : sharedAdminKey;
    const transports = Array.from({ length: options.connections }, () => createGrpcTransport({ baseUrl: ready.url }));
    const replica = new Replica(child, ready.url, adminKey, transports);
    child.on("message", (m: Record<string, unknown>) => {
      if (m.type === "stats") replica.statsWaiter?.(m as unknown as StatsMessage);
    });
    return replica;
  }

  agentClient(): Client<typeof WorkerService> {
    return this.agentClients[this.next++ % this.agentClients.length];
  }

  stats(): Promise<StatsMessage> {
    return new Promise((resolve) => {
      this.statsWaiter = resolve;
      this.child.send({ type: "stats" });
    });
  }

  private isStopping = false;

  async stop(): Promise<void> {
    this.isStopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.send({ type: "stop" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A submit is retried on unavailable only (e.g. SQLite's write lock held by another replica: nothing was stored). */
export const isRetryable = (err: unknown) => ConnectError.from(err).code === Code.Unavailable;
/** What the agent does not retry (src/agent/main.ts): a refused token or session. Anything else is the server in trouble. */
const AGENT_REFUSALS = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.FailedPrecondition, Code.NotFound]);
const isAgentRetryable = (err: unknown) => !AGENT_REFUSALS.has(ConnectError.from(err).code) && !(err instanceof Error && err.message.startsWith("canceled:"));
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The agent's side of one job, as src/agent/main.ts does it, with a command that costs nothing:
 * it registers on its stream (the job in the answer, then its hello), the stream is retried unless
 * refused (50 ms doubling, as the agent does): before the answer with the same token and instance
 * key, after it with the session, resumed with hello(started) and the output and result sent again
 * (the server ignores a resend).
 */
export async function runAgent(client: Client<typeof WorkerService>, otpToken: string, trace: Trace, onSucceeded: () => void): Promise<void> {
  const instanceKey = randomBytes(16).toString("base64url");
  let session: string | null = null;
  let ran = false;
  let now = 0n;
  const hello = (started: boolean) => create(AgentMessageSchema, { kind: { case: "hello", value: { started, lastSeq: 0n } } });
  const sendOutput = (outgoing: AsyncQueue<AgentMessage>) => {
    // The output, then the result right behind it on the same ordered stream (as the agent does).
    outgoing.push(create(AgentMessageSchema, { kind: { case: "logs", value: { chunks: [{ seq: 1n, stream: "stdout", data: OUTPUT, timeMs: now }] } } }));
    outgoing.push(create(AgentMessageSchema, { kind: { case: "result", value: { exitCode: 0, lastSeq: 1n, startedAtMs: now, finishedAtMs: now } } }));
  };
  const start = (outgoing: AsyncQueue<AgentMessage>) => {
    trace.runAt = at();
    ran = true;
    now = BigInt(Date.now());
    sendOutput(outgoing);
  };
  let delayMs = 50;
  for (let isResumed = false; ; isResumed = true) {
    const outgoing = new AsyncQueue<AgentMessage>();
    if (session === null) outgoing.push(create(AgentMessageSchema, { kind: { case: "register", value: { otpToken, hostname: "bench", agentVersion: "bench", instanceKey, runInAnswer: true } } }));
    else outgoing.push(hello(ran));
    let isAwaitingAck = session !== null && ran;
    try {
      for await (const message of client.connect(outgoing, session === null ? {} : { headers: { authorization: `Bearer ${session}` } })) {
        if (message.kind.case === "registered") {
          trace.registeredAt = at();
          session = message.kind.value.sessionToken;
          const run = message.kind.value.run;
          outgoing.push(hello(run !== undefined));
          if (run) start(outgoing);
        } else if (message.kind.case === "ack" && isAwaitingAck) {
          // Resumed after the run: the hello's ack says whether the output arrived; the result follows.
          isAwaitingAck = false;
          if (message.kind.value.seq < 1n) sendOutput(outgoing);
          else outgoing.push(create(AgentMessageSchema, { kind: { case: "result", value: { exitCode: 0, lastSeq: 1n, startedAtMs: now, finishedAtMs: now } } }));
        } else if (message.kind.case === "run" && !ran) {
          start(outgoing);
        } else if (message.kind.case === "resultAck") {
          trace.resultAckAt = at();
          onSucceeded();
          return; // leaves at once, cutting the stream, as the agent does
        } else if (message.kind.case === "cancel" && !ran) {
          // After its result a cancel changes nothing (a session check saw the job end before the
          // acknowledgement went out): the agent, whose command has finished, waits for the ack.
          throw new Error(`canceled: ${message.kind.value.reason}`);
        }
      }
      throw new Error("stream ended without a result acknowledgement");
    } catch (err) {
      if (!isAgentRetryable(err) || delayMs > 5000) throw new Error(`${isResumed ? "resumed stream: " : ""}${(err as Error).message}`, { cause: err });
      trace.retries = (trace.retries ?? 0) + 1;
      await sleep(delayMs);
      delayMs *= 2;
    } finally {
      outgoing.close();
    }
  }
}
