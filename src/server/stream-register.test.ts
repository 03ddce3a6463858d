/**
 * An agent that registers on its Connect stream (no session header): its first message is the
 * Register and the server's first is the answer, then its hello opens the session there. Through a
 * real gRPC (HTTP/2) server on a real store with a manual clock; the unary Register and the session
 * stream are tested in worker-service.test.ts and worker-stream.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { chunk, HEARTBEAT_TIMEOUT_MS, REGISTER_WAIT_MS, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";

describe("worker protocol: Register on the stream", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol();
  });
  after(async () => {
    await p.close();
  });
  beforeEach(() => p.clock.advance(1));

  const register = (otpToken: string, instanceKey = "k", runInAnswer = true) => ({ case: "register" as const, value: { otpToken, hostname: "h", agentVersion: "test", instanceKey, runInAnswer } });

  it("answers the register with the session and the job, and the hello opens the session on the same stream", async () => {
    const { otp, worker, job } = await p.provision();
    const stream = p.openStream();
    stream.send(register(otp));
    const answer = await stream.next();
    assert.ok(answer.kind.case === "registered", `expected registered, got ${answer.kind.case}`);
    const registered = answer.kind.value;
    assert.equal(registered.workerId, worker.id);
    assert.equal(registered.jobId, job.id);
    assert.match(registered.sessionToken, /\S{20,}/);
    assert.deepEqual(registered.run?.command, ["echo", "hi"], "the job came in the answer");
    let row = await p.store.workers.get(worker.id);
    assert.equal(row?.state, "running", "dispatched by the register");
    assert.equal(row?.stream_connected_at, null, "the session is not connected before the hello");

    stream.send({ case: "hello", value: { started: true, lastSeq: 0n } });
    assert.equal((await stream.next()).kind.case, "ack");
    row = await p.store.workers.get(worker.id);
    assert.notEqual(row?.stream_connected_at, null, "the hello connected the session");
    stream.send({ case: "logs", value: { chunks: [chunk(1, "hello\n")] } });
    assert.deepEqual((await stream.next()).kind.value, { $typeName: "hodei.v1.LogAck", seq: 1n });
    stream.send({ case: "result", value: { exitCode: 0, lastSeq: 1n, startedAtMs: 1n, finishedAtMs: 2n } });
    assert.equal((await stream.next()).kind.case, "resultAck");
    stream.outgoing.close();
    assert.equal(await stream.end(), null);
    assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");

    // The session works on a new stream too (a reconnect), with the header.
    const again = p.openStream(registered.sessionToken);
    again.send({ case: "hello", value: { started: true, lastSeq: 1n } });
    const error = await again.end();
    again.outgoing.close();
    assert.equal(error?.code, Code.FailedPrecondition, "the attempt ended: its session says so");
  });

  it("without run_in_answer, sends the job after the hello", async () => {
    const { otp } = await p.provision();
    const stream = p.openStream();
    stream.send(register(otp, "k", false));
    const answer = await stream.next();
    assert.ok(answer.kind.case === "registered" && answer.kind.value.run === undefined);
    stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    assert.equal((await stream.next()).kind.case, "ack");
    assert.equal((await stream.next()).kind.case, "run");
    stream.outgoing.close();
  });

  it("refuses an unknown or used token with the unary Register's error, and a first message that is not register", async () => {
    const unknown = p.openStream();
    unknown.send(register("hodei_otp_unknown"));
    const refused = await unknown.end();
    unknown.outgoing.close();
    assert.equal(refused?.code, Code.Unauthenticated);
    assert.match(refused!.rawMessage, /unknown OTP token/);

    const { otp } = await p.provision();
    const first = p.openStream();
    first.send(register(otp, "k1"));
    assert.equal((await first.next()).kind.case, "registered");
    first.send({ case: "hello", value: { started: true, lastSeq: 0n } });
    assert.equal((await first.next()).kind.case, "ack");
    const second = p.openStream();
    second.send(register(otp, "k2"));
    const used = await second.end();
    second.outgoing.close();
    assert.equal(used?.code, Code.Unauthenticated);
    assert.match(used!.rawMessage, /OTP token already used/);
    first.outgoing.close();

    const hello = p.openStream();
    hello.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    const bad = await hello.end();
    hello.outgoing.close();
    assert.equal(bad?.code, Code.InvalidArgument);
    assert.match(bad!.rawMessage, /starts with register/);
  });

  it("honours a repeated register (same instance key) until the hello, on a new stream, and revokes the first session", async () => {
    const { otp, worker } = await p.provision();
    const lost = p.openStream();
    lost.send(register(otp, "same"));
    const firstAnswer = await lost.next();
    assert.ok(firstAnswer.kind.case === "registered");
    lost.outgoing.close(); // the answer was lost: the agent tries again
    await lost.end();

    const retry = p.openStream();
    retry.send(register(otp, "same"));
    const answer = await retry.next();
    assert.ok(answer.kind.case === "registered");
    assert.notEqual(answer.kind.value.sessionToken, firstAnswer.kind.value.sessionToken, "a fresh session");
    assert.equal(answer.kind.value.workerId, worker.id);
    retry.send({ case: "hello", value: { started: true, lastSeq: 0n } });
    assert.equal((await retry.next()).kind.case, "ack");

    const old = p.openStream(firstAnswer.kind.value.sessionToken);
    old.send({ case: "hello", value: { started: true, lastSeq: 0n } });
    const revoked = await old.end();
    old.outgoing.close();
    assert.equal(revoked?.code, Code.Unauthenticated, "the earlier session stopped working");

    const late = p.openStream();
    late.send(register(otp, "same"));
    const refused = await late.end();
    late.outgoing.close();
    assert.equal(refused?.code, Code.Unauthenticated, "no repeat once the stream connected");
    retry.outgoing.close();
  });

  it("refuses a register on a stream that has its session", async () => {
    const { stream, otp } = await p.running();
    stream.send(register(otp));
    const error = await stream.end();
    stream.outgoing.close();
    assert.equal(error?.code, Code.InvalidArgument);
    assert.match(error!.rawMessage, /register: only as the first message/);
  });

  it("ends a stream without its register past the register wait, and one without its hello past the heartbeat timeout", async () => {
    const silent = p.openStream();
    // The stream reached the server once its headers did: a ping of the same connection orders them.
    await p.client.ping({});
    p.tick(REGISTER_WAIT_MS);
    assert.equal(p.sessions.endSilent(), 0, "exactly the wait is still fine");
    p.tick(1);
    assert.equal(p.sessions.endSilent(), 1);
    const error = await silent.end();
    silent.outgoing.close();
    assert.equal(error?.code, Code.Unavailable);
    assert.match(error!.rawMessage, /no register from the agent for 15001 ms \(register wait 15000 ms\)/);

    const { otp, worker } = await p.provision();
    const quiet = p.openStream();
    quiet.send(register(otp));
    assert.equal((await quiet.next()).kind.case, "registered");
    p.tick(HEARTBEAT_TIMEOUT_MS);
    assert.equal(p.sessions.endSilent(), 0, "the hello may take the heartbeat timeout");
    p.tick(1);
    assert.equal(p.sessions.endSilent(), 1);
    const noHello = await quiet.end();
    quiet.outgoing.close();
    assert.equal(noHello?.code, Code.Unavailable);
    assert.match(noHello!.rawMessage, /no hello from the agent/);
    assert.equal((await p.store.workers.get(worker.id))?.stream_connected_at, null);
  });

  it("ends the streams still registering at shutdown with Unavailable (the agent retries elsewhere)", async () => {
    const waiting = p.openStream();
    await p.client.ping({});
    p.sessions.closeAll("the control plane is shutting down");
    const error = await waiting.end();
    waiting.outgoing.close();
    assert.equal(error?.code, Code.Unavailable);
  });
});
