/**
 * OTP security through a real gRPC (HTTP/2) server running the worker service on a real store:
 * Register, its repeat after a lost answer, and who may open a stream. Tokens are minted exactly
 * as the scheduler mints them. The stream itself is tested in worker-stream.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { newId, workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import { REGISTRATION_MS, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { claimOne } from "../../test/fixtures/claim.js";

describe("worker protocol: Register", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol();
  });
  after(async () => {
    await p.close();
  });
  beforeEach(() => p.clock.advance(1));

  async function registerError(otpToken: string, hostname = "h", instanceKey = ""): Promise<ConnectError> {
    try {
      await p.client.register({ otpToken, hostname, agentVersion: "test", instanceKey });
    } catch (err) {
      return ConnectError.from(err);
    }
    assert.fail("register should have been refused");
  }

  /** The error a stream opened with this session ends with. */
  async function streamError(sessionToken: string): Promise<ConnectError | null> {
    const stream = p.openStream(sessionToken);
    stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    const error = await stream.end();
    stream.outgoing.close();
    return error;
  }

  it("consumes the token and identifies the worker from the token row", async () => {
    const { otp, worker, job } = await p.provision();
    const res = await p.client.register({ otpToken: otp, hostname: "anything", agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, worker.id);
    assert.equal(res.jobId, job.id);
    assert.equal(res.attempt, 1);
    assert.match(res.sessionToken, /^hodei_ses_/);
    const row = await p.store.workers.get(worker.id);
    assert.equal(row?.state, "registered");
    assert.equal(row?.session_hash, hashToken(res.sessionToken), "only the session's hash is stored");
    const token = await p.store.tokens.getByHash(hashToken(otp));
    assert.ok(token?.consumed_at);
    assert.equal(token?.instance_key_hash, hashToken("k"), "only the instance key's hash is stored");
  });

  it("keeps at most 255 characters of the hostname an agent reports, in the row and in the log", async () => {
    const { otp, worker } = await p.provision();
    const hostname = "h".repeat(100_000);
    await p.client.register({ otpToken: otp, hostname, agentVersion: "test", instanceKey: "k" });
    assert.equal((await p.store.workers.get(worker.id))?.reported_hostname, "h".repeat(255));
    const logged = p.lines.find((l) => l.msg?.startsWith("worker registered") && l.workerId === worker.id) as { reportedHostname?: string } | undefined;
    assert.equal(logged?.reportedHostname, "h".repeat(255), "the log line carries the bounded hostname, not 100,000 characters");
  });

  it("wakes no reconcile pass: a registration leaves the pass nothing to do, and a pass then would delay the agent", async () => {
    const hints: string[] = [];
    const unsubscribe = p.store.notifier.subscribe("reconcile", (payload) => hints.push(payload));
    try {
      const { otp, worker } = await p.provision();
      await new Promise((resolve) => setImmediate(resolve)); // hints of the provisioning, if any, are delivered
      hints.length = 0;
      await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
      assert.equal((await p.store.workers.get(worker.id))?.state, "registered");
      await new Promise((resolve) => setImmediate(resolve)); // local hints are delivered on a later tick
      assert.deepEqual(hints, []);
    } finally {
      unsubscribe();
    }
  });

  it("refuses a replayed token and changes nothing", async () => {
    const { otp, worker } = await p.provision();
    await p.client.register({ otpToken: otp, hostname: "first", agentVersion: "test", instanceKey: "k" });
    const before = await p.store.workers.get(worker.id);
    const error = await registerError(otp, "second");
    assert.equal(error.code, Code.Unauthenticated);
    assert.match(error.rawMessage, /already used/);
    assert.deepEqual(await p.store.workers.get(worker.id), before);
  });

  it("refuses an expired token and leaves it unconsumed", async () => {
    const { otp, worker } = await p.provision();
    p.tick(REGISTRATION_MS + 1);
    const error = await registerError(otp);
    assert.equal(error.code, Code.Unauthenticated);
    assert.match(error.rawMessage, /expired/);
    assert.equal((await p.store.tokens.getByHash(hashToken(otp)))?.consumed_at, null);
    assert.equal((await p.store.workers.get(worker.id))?.state, "waiting");
  });

  it("honours a token past its wall-clock expiry when the control plane itself was absent (frozen) meanwhile", async () => {
    const { otp, worker } = await p.provision();
    p.tick(REGISTRATION_MS / 2);
    p.clock.advance(REGISTRATION_MS); // frozen: the agent's Register waited in the socket
    const res = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, worker.id);
    assert.equal((await p.store.workers.get(worker.id))?.state, "registered");
  });

  it("never revives a revoked token, however long the control plane was absent", async () => {
    const { otp, worker } = await p.provision();
    const row = (await p.store.workers.get(worker.id))!;
    await p.store.attempts.end(row, "canceled", p.clock.nowMs(), { reason: "canceled" }, "canceled"); // revokes the token
    p.clock.advance(REGISTRATION_MS * 2);
    const error = await registerError(otp);
    assert.equal(error.code, Code.Unauthenticated);
    assert.equal((await p.store.tokens.getByHash(hashToken(otp)))?.consumed_at, null);
  });

  it("refuses an unknown token", async () => {
    const error = await registerError(mintOtpToken());
    assert.equal(error.code, Code.Unauthenticated);
    assert.match(error.rawMessage, /unknown OTP token/);
  });

  it("asks the agent to retry while the provider_resource_id is not recorded, without consuming", async () => {
    const { otp, worker } = await p.provision({ recordResource: false });
    const error = await registerError(otp);
    assert.equal(error.code, Code.Unavailable);
    assert.equal((await p.store.tokens.getByHash(hashToken(otp)))?.consumed_at, null);
    await p.store.attempts.recordProvisioned(worker.id, "4242", "process_id", p.clock.nowMs());
    const res = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, worker.id);
  });

  it("refuses the token of an attempt that has ended; the next attempt's token registers only its own worker", async () => {
    const { store, clock } = p;
    const spec = validateJobSpec({ command: ["true"], maxAttempts: 2 }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
    const jobRow = await store.jobs.insert(newId(), spec, clock.nowMs());
    const mint = async () => {
      const otp = mintOtpToken();
      const claimed = await claimOne(store, "local", clock.nowMs(), (job) => {
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
    const res = await p.client.register({ otpToken: second.otp, hostname: first.worker.name, agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, second.worker.id);
    assert.equal(res.attempt, 2);
    assert.equal((await store.workers.get(first.worker.id))?.state, "destroying");
  });

  it("ignores what the agent says about itself: a lying hostname changes nothing", async () => {
    const victim = await p.provision();
    const liar = await p.provision();
    const res = await p.client.register({ otpToken: liar.otp, hostname: victim.worker.name, agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, liar.worker.id);
    const liarRow = await p.store.workers.get(liar.worker.id);
    assert.equal(liarRow?.provider_resource_id, liar.resourceId, "provider_resource_id comes from the token row");
    assert.equal(liarRow?.reported_hostname, victim.worker.name, "the claim is only recorded");
    const victimRow = await p.store.workers.get(victim.worker.id);
    assert.equal(victimRow?.state, "waiting");
    assert.equal(victimRow?.provider_resource_id, victim.resourceId);
  });

  describe("the job in Register's answer (run_in_answer)", () => {
    it("dispatches the job in the Register and answers with its RunJob; the stream then sends no second one", async () => {
      const { otp, worker, job } = await p.provision({ command: ["echo", "hi"], secrets: { TOKEN: "s3cret-value" } });
      const res = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k", runInAnswer: true });
      assert.equal(res.run?.jobId, job.id);
      assert.deepEqual(res.run?.command, ["echo", "hi"]);
      assert.equal(res.run?.attempt, 1);
      assert.deepEqual(res.run?.secrets, { TOKEN: "s3cret-value" }, "opened for the RunJob, as on the stream");
      const row = await p.store.workers.get(worker.id);
      assert.equal(row?.state, "running");
      assert.equal(row?.started_at, p.clock.nowMs());
      assert.equal((await p.store.jobs.get(job.id))?.state, "running");
      const stream = p.openStream(res.sessionToken);
      stream.send({ case: "hello", value: { started: true, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "ack");
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "resultAck", "no run came between: the agent has it");
      assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");
      stream.outgoing.close();
    });

    it("answers without a job when it ended before the Register, and the stream tells the agent to stop", async () => {
      const { otp, worker, job } = await p.provision();
      await p.store.jobs.transition(job.id, "canceled", p.clock.nowMs(), { reason: "user" });
      const res = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k", runInAnswer: true });
      assert.equal(res.run, undefined);
      assert.equal((await p.store.workers.get(worker.id))?.state, "registered", "not dispatched");
      const stream = p.openStream(res.sessionToken);
      stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "ack");
      const stop = await stream.next();
      assert.equal(stop.kind.case, "cancel");
      stream.outgoing.close();
    });

    it("gives the same job again to a repeated Register of the same agent, the worker still running", async () => {
      const { otp, worker, job } = await p.provision();
      const lost = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key", runInAnswer: true });
      const startedAt = (await p.store.workers.get(worker.id))?.started_at;
      p.clock.advance(10);
      const again = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key", runInAnswer: true });
      assert.equal(again.run?.jobId, job.id);
      assert.equal(again.run?.attempt, lost.run?.attempt);
      const row = await p.store.workers.get(worker.id);
      assert.equal(row?.state, "running", "not moved back to registered");
      assert.equal(row?.started_at, startedAt, "dispatched once");
      assert.equal(row?.session_hash, hashToken(again.sessionToken));
      assert.equal((await registerError(otp, "thief", "guessed-key")).code, Code.Unauthenticated, "still only for the same agent");
    });
  });

  describe("a repeated Register (its answer was lost to a server failure)", () => {
    it("is honoured for the same agent before its stream connected: a fresh session, the first one revoked", async () => {
      const { otp, worker } = await p.provision();
      const lost = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      p.clock.advance(10);
      const again = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      assert.equal(again.workerId, worker.id);
      assert.notEqual(again.sessionToken, lost.sessionToken);
      assert.equal((await p.store.workers.get(worker.id))?.session_hash, hashToken(again.sessionToken));
      const refused = await streamError(lost.sessionToken);
      assert.equal(refused?.code, Code.Unauthenticated, "the first session no longer opens a stream");
      const stream = p.openStream(again.sessionToken);
      stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "ack");
      assert.equal((await stream.next()).kind.case, "run", "the fresh session gets the job");
      stream.outgoing.close();
    });

    it("registers a worker whose Register died between consuming the token and recording the session", async () => {
      const { otp, worker } = await p.provision();
      // The first call consumed the token, then the server died before registering the worker.
      assert.ok(await p.store.tokens.consume(hashToken(otp), p.clock.nowMs(), hashToken("agent-key")));
      assert.equal((await p.store.workers.get(worker.id))?.state, "waiting");
      const res = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      assert.equal(res.workerId, worker.id);
      assert.equal((await p.store.workers.get(worker.id))?.state, "registered");
    });

    it("is refused to someone who has the OTP token but not the agent's instance key, even before the stream connected", async () => {
      const { otp, worker } = await p.provision();
      const real = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      const before = await p.store.workers.get(worker.id);
      for (const stolenWith of ["", "guessed-key", "agent-key "]) {
        const error = await registerError(otp, "thief", stolenWith);
        assert.equal(error.code, Code.Unauthenticated, `instance key ${JSON.stringify(stolenWith)}`);
        assert.match(error.rawMessage, /already used/);
      }
      assert.deepEqual(await p.store.workers.get(worker.id), before, "the real agent's session is untouched");
      const stream = p.openStream(real.sessionToken);
      stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "ack", "and still opens the stream");
      stream.outgoing.close();
    });

    it("is never honoured for an agent that sent no instance key", async () => {
      const { otp } = await p.provision();
      await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "old", instanceKey: "" });
      assert.equal((await registerError(otp, "h", "")).code, Code.Unauthenticated);
    });

    it("is refused to the same agent once its stream has connected", async () => {
      const { otp, worker } = await p.provision();
      const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      const stream = p.openStream(reg.sessionToken);
      stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
      await stream.next();
      assert.ok((await p.store.workers.get(worker.id))?.stream_connected_at);
      const error = await registerError(otp, "h", "agent-key");
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /before the worker's stream connects/);
      assert.equal((await p.store.workers.get(worker.id))?.session_hash, hashToken(reg.sessionToken));
      stream.outgoing.close();
    });

    it("is refused to the same agent after the registration deadline", async () => {
      const { otp, worker } = await p.provision();
      const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      p.clock.advance(REGISTRATION_MS);
      const error = await registerError(otp, "h", "agent-key");
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal((await p.store.workers.get(worker.id))?.session_hash, hashToken(reg.sessionToken));
    });

    it("is refused once the attempt has ended", async () => {
      const { otp, worker } = await p.provision();
      await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "agent-key" });
      await p.store.attempts.end((await p.store.workers.get(worker.id))!, "canceled", p.clock.nowMs(), { reason: "user" }, "canceled");
      assert.equal((await registerError(otp, "h", "agent-key")).code, Code.Unauthenticated);
    });
  });

  describe("who may open a stream", () => {
    it("refuses a stream without a valid session", async () => {
      assert.equal((await streamError("hodei_ses_forged"))?.code, Code.Unauthenticated);
    });

    it("refuses the session of a worker whose attempt has ended", async () => {
      const { otp, worker } = await p.provision();
      const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
      await p.store.attempts.end((await p.store.workers.get(worker.id))!, "failed", p.clock.nowMs(), { reason: "lost" }, "lost");
      assert.equal((await streamError(reg.sessionToken))?.code, Code.FailedPrecondition);
    });
  });
});
