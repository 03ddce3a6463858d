/**
 * The agent's warm-up for its startup snapshot (scripts/agent-snapshot.cjs): runs, once, while the
 * snapshot is built, the code every worker runs on its way to a job's result short of the network
 * and the job's process: its configuration and assignment, the log buffer with redaction, and a
 * Ping, a Register and a Connect stream that registers (every message of the worker protocol, both ways) through
 * the real gRPC client over an HTTP/2 stand-in that answers in memory (AnsweringStream). V8 keeps the bytecode of
 * functions that ran in the snapshot, so workers need not compile them (measured: decision 0004).
 *
 * It touches nothing outside the process: no file, socket, child process or timer that outlives
 * it (a job's start only stats / and `sh` on PATH, as its checks do), and it reads no environment
 * (a snapshot must not hold the builder's). Everything it makes is
 * dropped; the snapshot is taken once its promise has settled (Node drains the event loop first).
 */
import type * as http2 from "node:http2";
import { Duplex } from "node:stream";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AsyncQueue } from "../core/async-queue.js";
import {
  type AgentMessage,
  AgentMessageSchema,
  PingResponseSchema,
  RegisterResponseSchema,
  ServerMessageSchema,
  WorkerService,
} from "../gen/hodei/v1/worker_pb.js";
import { shellArgv, shellScript } from "./command.js";
import { jobMarkers, parseAssignment, readAgentConfig } from "./config.js";
import { JOB_OOM_SCORE_ADJ, OomWatch, ownOomCountFile, wrapJobArgv } from "./job-cgroup.js";
import { LogBuffer, wireChunk } from "./log-buffer.js";
import { Redactor } from "./redact.js";
import { createAgentTransport } from "./transport.js";

export async function warmUp(): Promise<void> {
  const config = readAgentConfig({ HODEI_SERVER_URL: "http://127.0.0.1:1", HODEI_PROVIDER: "docker", HODEI_CLUSTER_ID: "warm-up", PATH: "/usr/bin:/bin" });
  const assignment = parseAssignment(
    JSON.stringify({ otpToken: "hodei_otp_warm-up", workerId: "w", workerName: "hodei-worker-w", jobId: "j", attempt: 1, workDir: "/tmp/hodei-work" }),
  );
  jobMarkers(config, assignment);
  createClient(WorkerService, createAgentTransport(config).transport);

  const redactor = new Redactor(["warm-up-secret"]);
  redactor.redactText("a warm-up-secret here");
  const logs = new LogBuffer({ limitBytes: 1 << 20, chunkBytes: 64 * 1024, windowBytes: 8 << 20, redactor });
  logs.system("[hodei] resources: none\n");
  logs.append("stdout", Buffer.from("hello warm-up-secret\n"));
  logs.append("stderr", Buffer.from("oops\n"));
  logs.end();
  logs.flush();
  logs.bytesAfter(0);
  logs.shouldPause();
  await callsInMemory(assignment.otpToken, logs);
  logs.unacknowledged();
  logs.isFullyAcknowledged();
  startOfAJob();
}

/**
 * A job's start short of its process: the script the prepared shell is given, with the checks a
 * spawn would make (stats of / and of `sh` on PATH), the wrapper of a job with a cgroup, and the
 * OOM watch's parsing of /proc/self/cgroup (of a text here, with no file behind it).
 */
function startOfAJob(): void {
  const env = { PATH: "/usr/bin:/bin", JOB: "it's" };
  const prepared = { child: undefined as never, env: { PATH: env.PATH, IDLE: "1" }, failed: false };
  for (const command of [["true", "x"], ["true"]]) {
    shellScript(prepared, shellArgv({ command, script: "", env, workDir: "/", timeoutSeconds: 0 }), env, "/");
  }
  wrapJobArgv({ procs: ["/warm-up/cgroup.procs"], oomScoreAdj: JOB_OOM_SCORE_ADJ }, ["true"]);
  ownOomCountFile("12:memory:/warm-up\n0::/warm-up\n", "/nonexistent-hodei-warm-up");
  new OomWatch("").wasKilled();
}

/**
 * A Ping, a unary Register and a Connect stream registered on, through the gRPC client, answered in memory: every
 * message of the worker protocol both ways (hello, the log buffer's chunks, a heartbeat, the
 * result; ack, run, cancel, resultAck) is encoded and decoded as on a real connection.
 */
async function callsInMemory(otpToken: string, logs: LogBuffer): Promise<void> {
  const authority = "http://warm-up.invalid";
  const serverMessages: MessageInitShape<typeof ServerMessageSchema>["kind"][] = [
    { case: "registered", value: { sessionToken: "s", workerId: "w", jobId: "j", attempt: 1, heartbeatIntervalMs: 5000 } },
    { case: "ack", value: { seq: 0n } },
    { case: "run", value: { jobId: "j", attempt: 1, command: ["true"], env: { A: "1" }, secrets: { S: "v" }, logLimitBytes: 1n, heartbeatIntervalMs: 5000 } },
    { case: "cancel", value: { reason: "r", graceMs: 1 } },
    { case: "resultAck", value: {} },
  ];
  const answers: Record<string, Uint8Array[]> = {
    "/hodei.v1.WorkerService/Ping": [toBinary(PingResponseSchema, create(PingResponseSchema, { serverTimeMs: 1n }))],
    "/hodei.v1.WorkerService/Register": [toBinary(RegisterResponseSchema, create(RegisterResponseSchema, { sessionToken: "s", workerId: "w", jobId: "j", attempt: 1, heartbeatIntervalMs: 5000 }))],
    "/hodei.v1.WorkerService/Connect": serverMessages.map((kind) => toBinary(ServerMessageSchema, create(ServerMessageSchema, { kind }))),
  };
  type Sessions = NonNullable<Parameters<typeof createGrpcTransport>[0]["sessionManager"]>;
  const sessions: Sessions = {
    authority,
    request: async (_method: string, path: string) => new AnsweringStream(answers[path] ?? []) as unknown as http2.ClientHttp2Stream,
    notifyResponseByteRead: () => {},
  };
  const client = createClient(WorkerService, createGrpcTransport({ baseUrl: authority, sessionManager: sessions }));
  await client.ping({});
  // The unary Register too: an agent uses it with a control plane of an earlier release.
  await client.register({ otpToken, hostname: "h", agentVersion: "0", instanceKey: "k", runInAnswer: true });
  const outgoing = new AsyncQueue<AgentMessage>();
  const send = (kind: MessageInitShape<typeof AgentMessageSchema>["kind"]) => outgoing.push(create(AgentMessageSchema, { kind }));
  send({ case: "register", value: { otpToken, hostname: "h", agentVersion: "0", instanceKey: "k", runInAnswer: true } });
  for await (const message of client.connect(outgoing, { signal: new AbortController().signal })) {
    if (message.kind.case === "registered") send({ case: "hello", value: { started: false, lastSeq: 0n } });
    if (message.kind.case === "ack") logs.acknowledge(Number(message.kind.value.seq));
    if (message.kind.case === "run") {
      send({ case: "logs", value: { chunks: logs.chunksAfter(0).map(wireChunk) } });
      send({ case: "heartbeat", value: { timeMs: 1n } });
      send({ case: "result", value: { exitCode: 0, lastSeq: BigInt(logs.lastSeq), startedAtMs: 1n, finishedAtMs: 2n } });
    }
    if (message.kind.case === "resultAck") outgoing.close();
  }
}

/**
 * What the gRPC client needs of an HTTP/2 stream, answering one call in memory once the client
 * has sent its first bytes: response headers, the answers as gRPC messages, then grpc-status 0.
 */
class AnsweringStream extends Duplex {
  rstCode = 0;
  private answered = false;

  constructor(private readonly answers: Uint8Array[]) {
    super();
  }

  override _read(): void {}

  override _write(_chunk: unknown, _encoding: BufferEncoding, done: () => void): void {
    this.answer();
    done();
  }

  override _final(done: () => void): void {
    this.answer();
    done();
  }

  close(_code?: number, done?: () => void): void {
    this.destroy();
    done?.();
  }

  private answer(): void {
    if (this.answered) return;
    this.answered = true;
    setImmediate(() => {
      this.emit("response", { ":status": 200, "content-type": "application/grpc+proto" });
      for (const message of this.answers) {
        const envelope = Buffer.alloc(5 + message.length);
        envelope.writeUInt32BE(message.length, 1);
        envelope.set(message, 5);
        this.push(envelope);
      }
      this.emit("trailers", { "grpc-status": "0" });
      this.push(null);
    });
  }
}
