/**
 * The protocol's floor for the `control_plane` bench section (configuration `floor`): a replica
 * that answers the same calls a job makes, over the same listener, Connect handler and codec as
 * the real server (listen, createRpcHandler, the configured edge limits), and does nothing else:
 * no database, no API key lookup, no reconcile pass, no provider. SubmitJob hands the job's
 * "token" to the bench's agents at once (the same IPC message the bench provider sends), the
 * stream's register is answered with a session and RunJob (the unary Register with a session), its
 * hello with an ack (or RunJob, when it was not in the answer), the log chunk with its ack and the
 * result with ResultAck, then it reports the worker stopped.
 *
 * Measured with the same agents, client and job count as the real configurations, its CPU per job
 * is what the RPCs alone cost: what the control plane's own work is compared with, and the bound
 * one replica could not pass with this protocol, however fast its store.
 *
 * IPC as bench/control-plane-server.ts (ready, token, stopped, stats); statements are always empty.
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { parseServerConfig } from "../src/config.js";
import { JobSchema, JobService } from "../src/gen/hodei/v1/api_pb.js";
import { type AgentMessage, ServerMessageSchema, WorkerService } from "../src/gen/hodei/v1/worker_pb.js";
import { errorInterceptor } from "../src/server/error-interceptor.js";
import { listen } from "../src/server/listener.js";
import { bidiStreamingPaths, createRpcHandler } from "../src/server/rpc-adapter.js";

const at = () => performance.timeOrigin + performance.now();
const send = (message: Record<string, unknown>) => process.send!(message);
const log = pino({ level: "warn" });
const config = parseServerConfig(process.env);

/** Sessions by token: the job each one runs. */
const sessions = new Map<string, { jobId: string; workerId: string }>();
/** OTP tokens handed out and not yet registered with. */
const tokens = new Map<string, { jobId: string; workerId: string }>();

const handler = createRpcHandler({
  maxMessageBytes: config.edge.maxMessageBytes,
  maxResponseMessageBytes: config.edge.maxResponseMessageBytes,
  interceptors: [errorInterceptor(log)],
  log,
  routes(router) {
    router.service(JobService, {
      submitJob(req) {
        const jobId = randomUUID();
        const workerId = randomUUID();
        const otpToken = randomUUID();
        tokens.set(otpToken, { jobId, workerId });
        const now = at();
        send({ type: "token", jobId, workerId, otpToken, serverUrl: "", claimedAt: now, provisionedAt: now });
        return { job: create(JobSchema, { id: jobId, command: req.command, state: "queued" }) };
      },
    });
    router.service(WorkerService, {
      register(req) {
        const worker = tokens.get(req.otpToken);
        if (!worker) throw new ConnectError("unknown token", Code.Unauthenticated);
        tokens.delete(req.otpToken);
        const sessionToken = randomUUID();
        sessions.set(sessionToken, worker);
        return { sessionToken };
      },
      async *connect(messages: AsyncIterable<AgentMessage>, ctx) {
        let sessionToken = (ctx.requestHeader.get("authorization") ?? "").replace(/^Bearer /, "");
        let worker = sessions.get(sessionToken);
        let isRunSent = false;
        if (!worker && sessionToken) throw new ConnectError("unknown session", Code.Unauthenticated);
        for await (const message of messages) {
          if (message.kind.case === "register" && !worker) {
            // An agent that registers on its stream: the session and the job in the answer.
            worker = tokens.get(message.kind.value.otpToken);
            if (!worker) throw new ConnectError("unknown token", Code.Unauthenticated);
            tokens.delete(message.kind.value.otpToken);
            sessionToken = randomUUID();
            sessions.set(sessionToken, worker);
            isRunSent = message.kind.value.runInAnswer;
            const run = isRunSent ? { jobId: worker.jobId, attempt: 1, command: ["echo", "hello"] } : undefined;
            yield create(ServerMessageSchema, { kind: { case: "registered", value: { sessionToken, workerId: worker.workerId, jobId: worker.jobId, attempt: 1, run } } });
          } else if (!worker) {
            throw new ConnectError("register first", Code.InvalidArgument);
          } else if (message.kind.case === "hello") {
            if (isRunSent) yield create(ServerMessageSchema, { kind: { case: "ack", value: { seq: 0n } } });
            else yield create(ServerMessageSchema, { kind: { case: "run", value: { jobId: worker.jobId, attempt: 1, command: ["echo", "hello"] } } });
            isRunSent = true;
          } else if (message.kind.case === "logs") {
            const last = message.kind.value.chunks.at(-1);
            yield create(ServerMessageSchema, { kind: { case: "ack", value: { seq: last?.seq ?? 0n } } });
          } else if (message.kind.case === "result") {
            sessions.delete(sessionToken);
            yield create(ServerMessageSchema, { kind: { case: "resultAck", value: {} } });
            send({ type: "stopped", jobId: worker.jobId, workerId: worker.workerId, at: at() });
            return;
          }
        }
      },
    });
  },
  fallback(_req, res) {
    res.writeHead(404);
    res.end();
  },
});

const listener = await listen(handler, {
  port: 0,
  host: "127.0.0.1",
  limits: { ...config.edge, longLivedPaths: bidiStreamingPaths([WorkerService, JobService]) },
  log,
  name: "main",
});

process.on("message", (message: { type: string }) => {
  if (message.type === "stats") {
    send({ type: "stats", at: at(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), statements: {} });
  } else if (message.type === "stop") {
    void listener.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  }
});
process.on("disconnect", () => process.exit(0));
send({ type: "ready", url: `http://127.0.0.1:${listener.port}`, clusterId: "floor" });
