/**
 * OTP security and the stream's dispatch, through a real gRPC (HTTP/2) server running the worker
 * service on a real store. Tokens are minted exactly as the scheduler mints them.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { AsyncQueue } from "../core/async-queue.js";
import { ManualClock } from "../core/clock.js";
import { newId, workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import { type AgentMessage, AgentMessageSchema, type ServerMessage, WorkerService } from "../gen/hodei/v1/worker_pb.js";
import { createMetrics } from "../metrics.js";
import { Reconciler } from "../scheduler/reconciler.js";
import { openDatabase } from "../store/database.js";
import { Store } from "../store/store.js";
import { errorInterceptor } from "./error-interceptor.js";
import { LogHub } from "./log-hub.js";
import { createWorkerService, SessionRegistry } from "./worker-service.js";

const REGISTRATION_MS = 60_000;

describe("worker protocol", () => {
  let store: Store;
  let clock: ManualClock;
  let server: http2.Http2Server;
  const sessions = new Set<http2.ServerHttp2Session>();
  let client: ReturnType<typeof createClient<typeof WorkerService>>;

  before(async () => {
    const log = pino({ level: "silent" });
    clock = new ManualClock(Date.now());
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    const metrics = createMetrics();
    const reconciler = new Reconciler({
      store,
      providers: new Map(),
      clock,
      log,
      metrics,
      registrationTimeoutMs: REGISTRATION_MS,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: 1000,
      orphanGraceMs: 1000,
      stopGraceMs: 1000,
      agents: new SessionRegistry(),
    });
    const service = createWorkerService({
      store,
      clock,
      log,
      metrics,
      reconciler,
      logHub: new LogHub(),
      sessions: new SessionRegistry(),
      heartbeatIntervalMs: 1000,
      logLimitBytes: 1024 * 1024,
      stopGraceMs: 1000,
    });
    server = http2.createServer(connectNodeAdapter({ interceptors: [errorInterceptor(log)], routes: (r) => r.service(WorkerService, service) }));
    server.on("session", (session) => sessions.add(session));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    client = createClient(WorkerService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  });

  after(async () => {
    for (const session of sessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
    await store.close();
  });

  /** Submits a job and provisions a worker for it as the scheduler does; returns the OTP secret. */
  async function provision(options: { recordResource?: boolean; command?: string[] } = {}) {
    const spec = validateJobSpec({ command: options.command ?? ["echo", "hi"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
    await store.jobs.insert(newId(), spec, clock.nowMs());
    const otp = mintOtpToken();
    const claimed = await store.attempts.claim(["local"], clock.nowMs(), (job) => {
      const id = newId();
      return {
        worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: "local", registrationDeadlineMs: clock.nowMs() + REGISTRATION_MS },
        token: { id: newId(), tokenHash: hashToken(otp), expiresAtMs: clock.nowMs() + REGISTRATION_MS },
      };
    });
    assert.ok(claimed);
    const resourceId = String(100_000 + Math.floor(Math.random() * 100_000));
    if (options.recordResource !== false) await store.attempts.recordProvisioned(claimed.worker.id, resourceId, "process_id", clock.nowMs());
    return { otp, worker: claimed.worker, job: claimed.job, resourceId };
  }

  async function registerError(otpToken: string, hostname = "h"): Promise<ConnectError> {
    try {
      await client.register({ otpToken, hostname, agentVersion: "test" });
    } catch (err) {
      return ConnectError.from(err);
    }
    assert.fail("register should have been refused");
  }

  beforeEach(() => clock.advance(1));

  describe("Register", () => {
    it("consumes the token and identifies the worker from the token row", async () => {
      const { otp, worker, job } = await provision();
      const res = await client.register({ otpToken: otp, hostname: "anything", agentVersion: "test" });
      assert.equal(res.workerId, worker.id);
      assert.equal(res.jobId, job.id);
      assert.equal(res.attempt, 1);
      assert.match(res.sessionToken, /^hodei_ses_/);
      const row = await store.workers.get(worker.id);
      assert.equal(row?.state, "registered");
      assert.equal(row?.session_hash, hashToken(res.sessionToken), "only the session's hash is stored");
      const token = await store.tokens.getByHash(hashToken(otp));
      assert.ok(token?.consumed_at);
    });

    it("refuses a replayed token and changes nothing", async () => {
      const { otp, worker } = await provision();
      await client.register({ otpToken: otp, hostname: "first", agentVersion: "test" });
      const before = await store.workers.get(worker.id);
      const error = await registerError(otp, "second");
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /already used/);
      assert.deepEqual(await store.workers.get(worker.id), before);
    });

    it("refuses an expired token and leaves it unconsumed", async () => {
      const { otp, worker } = await provision();
      clock.advance(REGISTRATION_MS + 1);
      const error = await registerError(otp);
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /expired/);
      assert.equal((await store.tokens.getByHash(hashToken(otp)))?.consumed_at, null);
      assert.equal((await store.workers.get(worker.id))?.state, "waiting");
    });

    it("refuses an unknown token", async () => {
      const error = await registerError(mintOtpToken());
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /unknown OTP token/);
    });

    it("asks the agent to retry while the provider_resource_id is not recorded, without consuming", async () => {
      const { otp, worker } = await provision({ recordResource: false });
      const error = await registerError(otp);
      assert.equal(error.code, Code.Unavailable);
      assert.equal((await store.tokens.getByHash(hashToken(otp)))?.consumed_at, null);
      await store.attempts.recordProvisioned(worker.id, "4242", "process_id", clock.nowMs());
      const res = await client.register({ otpToken: otp, hostname: "h", agentVersion: "test" });
      assert.equal(res.workerId, worker.id);
    });

    it("refuses the token of an attempt that has ended; the next attempt's token registers only its own worker", async () => {
      const spec = validateJobSpec({ command: ["true"], maxAttempts: 2 }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
      const jobRow = await store.jobs.insert(newId(), spec, clock.nowMs());
      const mint = async () => {
        const otp = mintOtpToken();
        const claimed = await store.attempts.claim(["local"], clock.nowMs(), (job) => {
          const id = newId();
          return {
            worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: "local", registrationDeadlineMs: clock.nowMs() + REGISTRATION_MS },
            token: { id: newId(), tokenHash: hashToken(otp), expiresAtMs: clock.nowMs() + REGISTRATION_MS },
          };
        });
        assert.equal(claimed?.job.id, jobRow.id);
        await store.attempts.recordProvisioned(claimed!.worker.id, newId(), "process_id", clock.nowMs());
        return { otp, worker: claimed!.worker };
      };
      const first = await mint();
      // Attempt 1 is lost before its agent registers; the job is requeued for attempt 2.
      await store.attempts.end(first.worker, "queued", clock.nowMs(), { not_before_ms: clock.nowMs() }, "lost");
      clock.advance(1);
      const second = await mint();
      assert.equal(second.worker.attempt, 2);
      const error = await registerError(first.otp);
      assert.equal(error.code, Code.Unauthenticated);
      const res = await client.register({ otpToken: second.otp, hostname: first.worker.name, agentVersion: "test" });
      assert.equal(res.workerId, second.worker.id);
      assert.equal(res.attempt, 2);
      assert.equal((await store.workers.get(first.worker.id))?.state, "destroying");
    });

    it("ignores what the agent says about itself: a lying hostname changes nothing", async () => {
      const victim = await provision();
      const liar = await provision();
      const res = await client.register({ otpToken: liar.otp, hostname: victim.worker.name, agentVersion: "test" });
      assert.equal(res.workerId, liar.worker.id);
      const liarRow = await store.workers.get(liar.worker.id);
      assert.equal(liarRow?.provider_resource_id, liar.resourceId, "provider_resource_id comes from the token row");
      assert.equal(liarRow?.reported_hostname, victim.worker.name, "the claim is only recorded");
      const victimRow = await store.workers.get(victim.worker.id);
      assert.equal(victimRow?.state, "waiting");
      assert.equal(victimRow?.provider_resource_id, victim.resourceId);
    });
  });

  describe("Connect", () => {
    async function openStream(sessionToken: string) {
      const outgoing = new AsyncQueue<AgentMessage>();
      const responses = client.connect(outgoing, { headers: { authorization: `Bearer ${sessionToken}` } })[Symbol.asyncIterator]();
      return { outgoing, next: async (): Promise<ServerMessage> => (await responses.next()).value as ServerMessage };
    }

    it("refuses a stream without a valid session", async () => {
      const { outgoing, next } = await openStream("hodei_ses_forged");
      outgoing.push(create(AgentMessageSchema, { kind: { case: "hello", value: { started: false, lastSeq: 0n } } }));
      await assert.rejects(next(), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
      outgoing.close();
    });

    it("dispatches the job on hello, stores and acknowledges logs, and records the result after them", async () => {
      const { otp, worker, job } = await provision({ command: ["echo", "from the stream"] });
      const reg = await client.register({ otpToken: otp, hostname: "h", agentVersion: "test" });
      const { outgoing, next } = await openStream(reg.sessionToken);
      outgoing.push(create(AgentMessageSchema, { kind: { case: "hello", value: { started: false, lastSeq: 0n } } }));
      assert.equal((await next()).kind.case, "ack");
      const run = await next();
      assert.equal(run.kind.case, "run");
      assert.deepEqual(run.kind.case === "run" && run.kind.value.command, ["echo", "from the stream"]);
      assert.equal((await store.jobs.get(job.id))?.state, "running");
      assert.equal((await store.workers.get(worker.id))?.state, "running");

      const chunk = (seq: number, data: string) => ({ seq: BigInt(seq), stream: "stdout", data, timeMs: BigInt(clock.nowMs()) });
      outgoing.push(create(AgentMessageSchema, { kind: { case: "logs", value: { chunks: [chunk(1, "a\n"), chunk(2, "b\n")] } } }));
      const ack = await next();
      assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, 2n);
      // A resend after a reconnect is stored once.
      outgoing.push(create(AgentMessageSchema, { kind: { case: "logs", value: { chunks: [chunk(2, "b\n")] } } }));
      await next();
      assert.equal(await store.logs.count(job.id, 1, 10), 2);

      outgoing.push(create(AgentMessageSchema, { kind: { case: "result", value: { exitCode: 0, lastSeq: 2n } } }));
      assert.equal((await next()).kind.case, "resultAck");
      outgoing.close();
      const done = await store.jobs.get(job.id);
      assert.equal(done?.state, "succeeded");
      assert.equal(done?.exit_code, 0);
      assert.equal(done?.logs_incomplete, 0);
      assert.equal((await store.workers.get(worker.id))?.state, "destroying");
    });

    it("marks the logs incomplete when the result claims chunks that never arrived", async () => {
      const { otp, job } = await provision();
      const reg = await client.register({ otpToken: otp, hostname: "h", agentVersion: "test" });
      const { outgoing, next } = await openStream(reg.sessionToken);
      outgoing.push(create(AgentMessageSchema, { kind: { case: "hello", value: { started: false, lastSeq: 0n } } }));
      await next();
      await next();
      outgoing.push(create(AgentMessageSchema, { kind: { case: "result", value: { exitCode: 3, lastSeq: 5n } } }));
      assert.equal((await next()).kind.case, "resultAck");
      outgoing.close();
      const done = await store.jobs.get(job.id);
      assert.equal(done?.state, "failed");
      assert.equal(done?.exit_code, 3);
      assert.equal(done?.logs_incomplete, 1);
    });

    it("refuses the session of a worker whose attempt has ended", async () => {
      const { otp, worker } = await provision();
      const reg = await client.register({ otpToken: otp, hostname: "h", agentVersion: "test" });
      const row = await store.workers.get(worker.id);
      await store.attempts.end(row!, "failed", clock.nowMs(), { reason: "lost" }, "lost");
      const { outgoing, next } = await openStream(reg.sessionToken);
      outgoing.push(create(AgentMessageSchema, { kind: { case: "hello", value: { started: false, lastSeq: 0n } } }));
      await assert.rejects(next(), (err: unknown) => ConnectError.from(err).code === Code.FailedPrecondition);
      outgoing.close();
    });
  });
});
