/**
 * The agent's warm-up for its startup snapshot (scripts/agent-snapshot.cjs): runs, once, while the
 * snapshot is built, the code every worker runs on its way to a job's result that needs no
 * connection: its configuration and assignment, the worker protocol's messages both ways (encoded
 * and decoded, as the transport does), the log buffer with redaction, and the transport's
 * construction. V8 keeps the bytecode of functions that ran in the snapshot, so workers need not
 * compile them (bench/agent-boot.ts shows the difference in its loaded_to_registered step).
 *
 * It touches nothing outside the process: no file, socket, child process or timer, and it reads no
 * environment (a snapshot must not hold the builder's). Everything it makes is dropped.
 */
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  AgentMessageSchema,
  PingRequestSchema,
  PingResponseSchema,
  RegisterRequestSchema,
  RegisterResponseSchema,
  ServerMessageSchema,
  WorkerService,
} from "../gen/hodei/v1/worker_pb.js";
import { jobMarkers, parseAssignment, readAgentConfig } from "./config.js";
import { LogBuffer } from "./log-buffer.js";
import { Redactor } from "./redact.js";

export function warmUp(): void {
  const config = readAgentConfig({ HODEI_SERVER_URL: "http://127.0.0.1:1", HODEI_PROVIDER: "docker", HODEI_CLUSTER_ID: "warm-up", PATH: "/usr/bin:/bin" });
  const assignment = parseAssignment(
    JSON.stringify({ otpToken: "hodei_otp_warm-up", workerId: "w", workerName: "hodei-worker-w", jobId: "j", attempt: 1, workDir: "/tmp/hodei-work" }),
  );
  jobMarkers(config, assignment);
  createClient(WorkerService, createGrpcTransport({ baseUrl: config.serverUrl }));

  const roundTrip = <T extends Parameters<typeof toBinary>[0]>(schema: T, init: Parameters<typeof create<T>>[1]) =>
    fromBinary(schema, toBinary(schema, create(schema, init)));
  roundTrip(PingRequestSchema, {});
  roundTrip(PingResponseSchema, { serverTimeMs: 1n });
  roundTrip(RegisterRequestSchema, { otpToken: assignment.otpToken, hostname: "h", agentVersion: "0", instanceKey: "k" });
  roundTrip(RegisterResponseSchema, { sessionToken: "s", workerId: "w", jobId: "j", attempt: 1, heartbeatIntervalMs: 5000 });

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
  const chunks = logs.chunksAfter(0);
  const agentMessages: MessageInitShape<typeof AgentMessageSchema>["kind"][] = [
    { case: "hello", value: { started: false, lastSeq: 0n } },
    { case: "logs", value: { chunks: chunks.map((c) => ({ seq: BigInt(c.seq), stream: c.stream, data: c.data, timeMs: BigInt(c.timeMs) })) } },
    { case: "heartbeat", value: { timeMs: 1n } },
    {
      case: "result",
      value: { exitCode: 0, signal: "", timedOut: false, canceled: false, error: "", lastSeq: BigInt(logs.lastSeq), droppedBytes: 0n, startedAtMs: 1n, finishedAtMs: 2n, interrupted: false },
    },
  ];
  for (const kind of agentMessages) roundTrip(AgentMessageSchema, { kind });
  logs.acknowledge(logs.lastSeq);
  logs.unacknowledged();
  logs.isFullyAcknowledged();

  const serverMessages: MessageInitShape<typeof ServerMessageSchema>["kind"][] = [
    { case: "ack", value: { seq: 1n } },
    {
      case: "run",
      value: {
        jobId: "j",
        attempt: 1,
        command: ["echo", "hello"],
        script: "",
        env: { A: "1" },
        timeoutSeconds: 0,
        logLimitBytes: 1n,
        heartbeatIntervalMs: 5000,
        workingDir: "",
        secrets: { S: "warm-up-secret" },
        resourcesApplied: "",
        memoryMb: 0,
      },
    },
    { case: "cancel", value: { reason: "r", graceMs: 1 } },
    { case: "resultAck", value: {} },
  ];
  for (const kind of serverMessages) roundTrip(ServerMessageSchema, { kind });
}
