/**
 * The Connect stream through a real gRPC (HTTP/2) server on a real store: dispatch, log chunks
 * (bytes, numbering, bounds, the log limit), the result (complete, interrupted), silence, and what
 * the server logs when a stream fails. Each attack an agent could make is sent as it would be.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { chunk, HEARTBEAT_TIMEOUT_MS, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { envelope, http2Request } from "../../test/e2e/raw-wire.js";
import { MAX_BATCH_CHUNKS, MAX_CHUNK_BYTES, MAX_ERROR_CHARS, SYSTEM_ALLOWANCE_BYTES } from "./agent-stream.js";

const LIMIT = 64 * 1024;

describe("worker protocol: the Connect stream", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol({ logLimitBytes: LIMIT });
  });
  after(async () => {
    await p.close();
  });
  beforeEach(() => p.clock.advance(1));

  const all = { attempt: 0, seq: 0 };
  const stored = async (jobId: string) => (await p.store.logs.read(jobId, all, 10_000)).map((r) => [r.seq, r.stream, r.data.toString()]);

  it("dispatches the job on hello, stores and acknowledges logs, and records the result after them", async () => {
    const { worker, job, stream } = await p.running({ command: ["echo", "from the stream"] });
    assert.equal((await p.store.jobs.get(job.id))?.state, "running");
    assert.equal((await p.store.workers.get(worker.id))?.state, "running");
    stream.send({ case: "logs", value: { chunks: [chunk(1, "a\n"), chunk(2, "b\n")] } });
    const ack = await stream.next();
    assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, 2n);
    stream.send({ case: "result", value: { exitCode: 0, lastSeq: 2n } });
    assert.equal((await stream.next()).kind.case, "resultAck");
    stream.outgoing.close();
    const done = await p.store.jobs.get(job.id);
    assert.equal(done?.state, "succeeded");
    assert.equal(done?.exit_code, 0);
    assert.equal(done?.logs_incomplete, 0);
    assert.equal((await p.store.workers.get(worker.id))?.state, "destroying");
  });

  it("marks the logs incomplete when the result claims chunks that never arrived", async () => {
    const { job, stream } = await p.running();
    stream.send({ case: "result", value: { exitCode: 3, lastSeq: 5n } });
    assert.equal((await stream.next()).kind.case, "resultAck");
    stream.outgoing.close();
    const done = await p.store.jobs.get(job.id);
    assert.equal(done?.state, "failed");
    assert.equal(done?.exit_code, 3);
    assert.equal(done?.logs_incomplete, 1);
  });

  it(`keeps at most ${MAX_ERROR_CHARS} characters of a result's error as the job's reason, saying how much was cut`, async () => {
    const { job, stream } = await p.running();
    stream.send({ case: "result", value: { exitCode: 0, error: "e".repeat(1_000_000), lastSeq: 0n } });
    assert.equal((await stream.next()).kind.case, "resultAck");
    stream.outgoing.close();
    const done = await p.store.jobs.get(job.id);
    assert.equal(done?.state, "failed");
    assert.equal(done?.reason, `${"e".repeat(MAX_ERROR_CHARS)}… (${1_000_000 - MAX_ERROR_CHARS} more characters cut by the control plane)`);
  });

  it("refuses a result whose signal is not a signal name, and records nothing", async () => {
    const { job, stream } = await p.running();
    stream.send({ case: "result", value: { exitCode: 137, signal: "K".repeat(100_000), lastSeq: 0n } });
    const error = await stream.end();
    stream.outgoing.close();
    assert.equal(error?.code, Code.InvalidArgument);
    assert.match(error.rawMessage, /^result: signal "K{32}" is not a signal name/);
    assert.equal((await p.store.jobs.get(job.id))?.state, "running");
  });

  it("stores output that is not UTF-8 byte for byte", async () => {
    const { job, stream } = await p.running();
    const raw = Buffer.from([0x41, 0xff, 0xfe, 0x42]); // printf 'A\377\376B'
    stream.send({ case: "logs", value: { chunks: [chunk(1, raw)] } });
    await stream.next();
    stream.outgoing.close();
    const [row] = await p.store.logs.read(job.id, all, 10);
    assert.deepEqual([...row.data], [0x41, 0xff, 0xfe, 0x42]);
  });

  it("answers a message that does not decode with InvalidArgument (bad input, not a broken connection)", async () => {
    const { reg, stream } = await p.running();
    stream.outgoing.close(); // the agent's own stream is done; a second one sends garbage
    await stream.end();
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 1, a length far past the end
    const answer = await http2Request(p.url, {
      path: "/hodei.v1.WorkerService/Connect",
      headers: { "content-type": "application/grpc", authorization: `Bearer ${reg.sessionToken}` },
      body: envelope(0, garbage),
    });
    assert.equal(answer.trailers["grpc-status"] ?? answer.headers["grpc-status"], String(Code.InvalidArgument), JSON.stringify(answer.trailers));
    assert.match(String(answer.trailers["grpc-message"] ?? ""), /decode/);
  });

  describe("sequence numbers", () => {
    it("acknowledges and ignores a resend (a reconnect), and tells a reconnecting agent where it stands", async () => {
      const { job, reg, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1), chunk(2)] } });
      await stream.next();
      stream.send({ case: "logs", value: { chunks: [chunk(2, "resent"), chunk(3)] } });
      const ack = await stream.next();
      assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, 3n);
      stream.outgoing.close();
      const again = p.openStream(reg.sessionToken);
      again.send({ case: "hello", value: { started: true, lastSeq: 4n } });
      const hello = await again.next();
      assert.equal(hello.kind.case === "ack" && hello.kind.value.seq, 3n, "the agent resends from seq 4");
      again.send({ case: "logs", value: { chunks: [chunk(1, "very old"), chunk(2, "old"), chunk(3, "old"), chunk(4)] } });
      const ack4 = await again.next();
      assert.equal(ack4.kind.case === "ack" && ack4.kind.value.seq, 4n);
      again.outgoing.close();
      assert.deepEqual(await stored(job.id), [1, 2, 3, 4].map((n) => [n, "stdout", `line ${n}\n`]));
    });

    const attacks: [string, ReturnType<typeof chunk>[], RegExp][] = [
      ["seq 0", [chunk(0)], /seq 0 is out of range/],
      ["seq -5", [chunk(-5)], /seq -5 is out of range/],
      ["seq 2^62", [chunk(2n ** 62n)], /out of range; seqs run from 1 to 2147483647/],
      ["seq 2^53 + 1 (beyond a float's precision)", [chunk(2n ** 53n + 1n)], /out of range/],
      ["seq 2^31", [chunk(2n ** 31n)], /out of range/],
      ["a gap: seq 3 after seq 1", [chunk(3)], /seq 3 does not follow seq 1/],
      ["a gap inside one batch", [chunk(2), chunk(4)], /seq 4 follows 2 in one batch/],
      ["an unknown stream", [chunk(2, "x", "stdin")], /stream "stdin"; use stdout, stderr or system/],
    ];
    for (const [what, chunks, message] of attacks) {
      it(`refuses ${what} with InvalidArgument, ends the stream and stores nothing`, async () => {
        const { job, worker, stream } = await p.running();
        stream.send({ case: "logs", value: { chunks: [chunk(1)] } });
        await stream.next();
        stream.send({ case: "logs", value: { chunks } });
        const error = await stream.end();
        stream.outgoing.close();
        assert.equal(error?.code, Code.InvalidArgument);
        assert.match(error.rawMessage, message);
        assert.deepEqual(await stored(job.id), [[1, "stdout", "line 1\n"]]);
        assert.equal((await p.store.workers.get(worker.id))?.log_seq, 1);
        const warned = p.lines.find((l) => l.msg === "agent stream ended with an error" && l.workerId === worker.id);
        assert.equal(warned?.level, 40, "logged at warn");
        assert.equal(warned?.jobId, job.id);
      });
    }

    it("accepts nothing after the result on the still-open stream", async () => {
      const { job, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1)] } });
      await stream.next();
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: 1n } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.send({ case: "logs", value: { chunks: [chunk(2, "after the result")] } });
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.FailedPrecondition);
      assert.match(error.rawMessage, /result of this attempt is recorded/);
      assert.deepEqual(await stored(job.id), [[1, "stdout", "line 1\n"]]);
    });

    it("accepts nothing once the worker's attempt has ended (lost, destroyed)", async () => {
      const { job, worker, stream } = await p.running();
      await p.store.attempts.end((await p.store.workers.get(worker.id))!, "failed", p.clock.nowMs(), { reason: "lost" }, "heartbeat lapsed");
      stream.send({ case: "logs", value: { chunks: [chunk(1)] } });
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.FailedPrecondition);
      assert.match(error.rawMessage, /attempt has ended \(worker destroying\)/);
      assert.deepEqual(await stored(job.id), []);
    });

    it("numbers a control-plane line after the agent's chunks, so a late resend of that seq is a duplicate", async () => {
      const { job, worker, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1)] } });
      await stream.next();
      await p.store.logs.appendSystemLine(worker.id, "[hodei] note\n", p.clock.nowMs());
      stream.send({ case: "logs", value: { chunks: [chunk(2, "late"), chunk(3)] } });
      const ack = await stream.next();
      assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, 3n);
      stream.outgoing.close();
      assert.deepEqual(await stored(job.id), [
        [1, "stdout", "line 1\n"],
        [2, "system", "[hodei] note\n"],
        [3, "stdout", "line 3\n"],
      ]);
    });
  });

  describe("bounds and the log limit", () => {
    it(`refuses a chunk over ${MAX_CHUNK_BYTES} bytes, naming the bound`, async () => {
      const { job, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1, Buffer.alloc(MAX_CHUNK_BYTES + 1, 0x78))] } });
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.InvalidArgument);
      assert.match(error.rawMessage, new RegExp(`at most ${MAX_CHUNK_BYTES} per chunk`));
      assert.deepEqual(await stored(job.id), []);
    });

    it(`refuses a batch of more than ${MAX_BATCH_CHUNKS} chunks, naming the bound`, async () => {
      const { job, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: Array.from({ length: MAX_BATCH_CHUNKS + 1 }, (_, i) => chunk(i + 1, "x")) } });
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.InvalidArgument);
      assert.match(error.rawMessage, new RegExp(`at most ${MAX_BATCH_CHUNKS}`));
      assert.deepEqual(await stored(job.id), []);
    });

    it("stores at most the limit plus the allowance whatever the agent sends, writes one marker, keeps acknowledging, and flags the job", async () => {
      const { job, worker, stream } = await p.running();
      const big = Buffer.alloc(MAX_CHUNK_BYTES, 0x78);
      let seq = 0;
      // 20 chunks of 256 KiB: 5 MiB against a 64 KiB limit, in batches as an agent ignoring the limit would send.
      for (let batch = 0; batch < 4; batch++) {
        stream.send({ case: "logs", value: { chunks: Array.from({ length: 5 }, () => chunk(++seq, big)) } });
        const ack = await stream.next();
        assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, BigInt(seq), "every chunk is acknowledged");
      }
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: BigInt(seq) } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.outgoing.close();
      const rows = await p.store.logs.read(job.id, all, 100);
      const total = rows.reduce((n, r) => n + r.data.length, 0);
      assert.ok(total <= LIMIT + SYSTEM_ALLOWANCE_BYTES, `stored ${total} bytes`);
      const markers = rows.filter((r) => r.stream === "system");
      assert.equal(markers.length, 1);
      assert.match(markers[0].data.toString(), /output truncated by the control plane: the log limit of 65536 bytes was reached/);
      assert.equal((await p.store.workers.get(worker.id))?.log_seq, seq);
      const done = await p.store.jobs.get(job.id);
      assert.equal(done?.state, "succeeded");
      assert.equal(done?.logs_truncated, 1);
      assert.equal(done?.logs_incomplete, 0, "every chunk was received, stored or not");
    });

    it("stores all of a well-behaved agent's log: output up to the limit and its own marker", async () => {
      const { job, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1, Buffer.alloc(LIMIT, 0x79)), chunk(2, "\n[hodei] output truncated: ...\n", "system")] } });
      await stream.next();
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: 2n, droppedBytes: 10n } });
      await stream.next();
      stream.outgoing.close();
      const rows = await p.store.logs.read(job.id, all, 10);
      assert.deepEqual(rows.map((r) => [r.stream, r.data.length]), [
        ["stdout", LIMIT],
        ["system", 31],
      ]);
      assert.equal((await p.store.jobs.get(job.id))?.logs_truncated, 1, "the agent's own truncation counts");
    });
  });

  describe("silence", () => {
    it("ends a stream on which the agent has sent nothing for longer than the heartbeat timeout", async () => {
      const { worker, stream } = await p.running();
      p.tick(HEARTBEAT_TIMEOUT_MS);
      assert.equal(p.sessions.endSilent(), 0, "exactly the timeout is still fine");
      p.tick(1);
      assert.equal(p.sessions.endSilent(), 1);
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.Unavailable);
      assert.match(error.rawMessage, /no message from the agent for 30001 ms/);
      const warned = p.lines.find((l) => l.msg === "agent stream ended with an error" && l.workerId === worker.id);
      assert.equal(warned?.level, 40, "logged at warn");
      assert.equal(warned?.jobId, worker.job_id);
    });

    it("does not end a stream for the control plane's own absence (frozen longer than the timeout)", async () => {
      const { stream } = await p.running();
      p.tick(1000);
      p.clock.advance(HEARTBEAT_TIMEOUT_MS * 3); // frozen: no beat, nothing read
      p.reconciler.liveness.beat(); // what the silence check does first after resuming
      assert.equal(p.sessions.endSilent(), 0, "the first check after resuming ends nothing");
      p.tick(HEARTBEAT_TIMEOUT_MS);
      assert.equal(p.sessions.endSilent(), 1, "still silent after the full timeout of present time");
      stream.outgoing.close();
    });

    it("keeps a stream whose agent heartbeats", async () => {
      const { stream } = await p.running();
      p.tick(HEARTBEAT_TIMEOUT_MS - 1);
      stream.send({ case: "heartbeat", value: { timeMs: 1n } });
      stream.send({ case: "logs", value: { chunks: [chunk(1)] } });
      await stream.next(); // the chunk's ack: the heartbeat before it was read
      p.tick(HEARTBEAT_TIMEOUT_MS);
      assert.equal(p.sessions.endSilent(), 0);
      stream.send({ case: "logs", value: { chunks: [chunk(2)] } });
      const ack = await stream.next();
      assert.equal(ack.kind.case === "ack" && ack.kind.value.seq, 2n, "the stream still works");
      stream.outgoing.close();
    });
  });

  describe("an interrupted result (the agent was stopped from outside)", () => {
    it("ends an attempt in progress as the provider's loss, not the command's failure: not counted, the job is retried", async () => {
      const { job, worker, stream } = await p.running();
      stream.send({ case: "logs", value: { chunks: [chunk(1, "working\n"), chunk(2, "[hodei] stopped\n", "system")] } });
      await stream.next();
      stream.send({ case: "result", value: { exitCode: 143, signal: "SIGTERM", canceled: true, interrupted: true, lastSeq: 2n } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.outgoing.close();
      const done = await p.store.jobs.get(job.id);
      assert.equal(done?.state, "queued", "retried although one attempt was allowed: the loss is not the job's");
      assert.equal(done?.uncounted_attempts, 1);
      assert.equal(done?.max_attempts, 1);
      assert.match(done?.reason ?? "", /stopped by its provider \(local\) while the job ran; the command itself did not fail.*not counted against maxAttempts/);
      // Neither the agent's exit code nor its cancel is the reason (the worker's name is a random uuid, which may hold "143").
      assert.doesNotMatch((done?.reason ?? "").replaceAll(worker.name, "<worker>"), /143|canceled/);
      assert.equal(done?.exit_code, null);
      const w = await p.store.workers.get(worker.id);
      assert.equal(w?.state, "destroying");
      assert.match(w?.failure_reason ?? "", /stopped by its provider/);
    });

    it("retries the job when attempts are left", async () => {
      const { job, stream } = await p.running({ maxAttempts: 2 });
      stream.send({ case: "result", value: { exitCode: 143, interrupted: true, lastSeq: 0n } });
      await stream.next();
      stream.outgoing.close();
      const requeued = await p.store.jobs.get(job.id);
      assert.equal(requeued?.state, "queued");
      assert.match(requeued?.reason ?? "", /attempt 1 lost: the worker .* was stopped by its provider/);
    });

    it("only acknowledges it for an attempt that already ended (a cancel)", async () => {
      const { job, stream } = await p.running();
      assert.ok(await p.store.jobs.transition(job.id, "canceled", p.clock.nowMs(), { reason: "canceled by user" }));
      stream.send({ case: "result", value: { exitCode: 143, canceled: true, interrupted: true, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.outgoing.close();
      const done = await p.store.jobs.get(job.id);
      assert.equal(done?.state, "canceled");
      assert.equal(done?.reason, "canceled by user");
    });
  });

  describe("a result whose exit code the job retries (retryOnExitCodes)", () => {
    it("requeues the job for a new attempt after the backoff; the attempt shows its exit code and why it ended", async () => {
      const { job, worker, stream } = await p.running({ maxAttempts: 3, retryOnExitCodes: "3,4" });
      stream.send({ case: "logs", value: { chunks: [chunk(1, "flaky\n")] } });
      await stream.next();
      const failedAt = p.clock.nowMs();
      stream.send({ case: "result", value: { exitCode: 3, lastSeq: 1n } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.outgoing.close();
      const requeued = await p.store.jobs.get(job.id);
      assert.equal(requeued?.state, "queued");
      assert.equal(requeued?.reason, "attempt 1 failed: the command exited with code 3; retrying");
      assert.equal(requeued?.exit_code, null);
      assert.equal(requeued?.uncounted_attempts, 0, "counted against maxAttempts");
      const delay = (requeued?.not_before_ms ?? 0) - failedAt;
      assert.ok(delay >= 500 && delay <= 1000, `backoff ${delay} ms within [500, 1000]`);
      const w = await p.store.workers.get(worker.id);
      assert.deepEqual([w?.state, w?.exit_code, w?.failure_reason], ["destroying", 3, "the command exited with code 3"]);
      const [attempt] = (await p.api.getJob({ id: job.id })).attemptHistory;
      assert.equal(attempt.exitCode, 3);
      assert.equal(attempt.reason, "the command exited with code 3");
      assert.equal((await p.api.getJob({ id: job.id })).retryOnExitCodes, "3,4");
      assert.deepEqual(await stored(job.id), [
        [1, "stdout", "flaky\n"],
        [2, "system", "[hodei] the command exited with code 3, an exit code this job retries: it runs again on a new worker (attempt 2)\n"],
      ]);
    });

    it("retries every non-zero exit with any, a command killed by a signal included", async () => {
      const { job, stream } = await p.running({ maxAttempts: 2, retryOnExitCodes: "any" });
      stream.send({ case: "result", value: { exitCode: 137, signal: "SIGKILL", lastSeq: 0n } });
      await stream.next();
      stream.outgoing.close();
      const requeued = await p.store.jobs.get(job.id);
      assert.equal(requeued?.state, "queued");
      assert.equal(requeued?.reason, "attempt 1 failed: the command was killed by SIGKILL; retrying");
    });

    it("fails the job at once on an exit code the job does not list", async () => {
      const { job, worker, stream } = await p.running({ maxAttempts: 3, retryOnExitCodes: "3,4" });
      stream.send({ case: "result", value: { exitCode: 5, lastSeq: 0n } });
      await stream.next();
      stream.outgoing.close();
      const done = await p.store.jobs.get(job.id);
      assert.deepEqual([done?.state, done?.exit_code, done?.attempts, done?.reason], ["failed", 5, 1, "the command exited with code 5"]);
      assert.equal((await p.store.workers.get(worker.id))?.exit_code, 5);
    });

    it("fails the job with the exit code on its last attempt, logs marked as the result says", async () => {
      const { job, worker, stream } = await p.running({ maxAttempts: 2, retryOnExitCodes: "3" });
      // As if this were the second of two attempts: none is left.
      await p.store.db.updateTable("jobs").set({ max_attempts: 1 }).where("id", "=", job.id).execute();
      stream.send({ case: "result", value: { exitCode: 3, lastSeq: 2n, droppedBytes: 10n } });
      await stream.next();
      stream.outgoing.close();
      const done = await p.store.jobs.get(job.id);
      assert.deepEqual([done?.state, done?.exit_code, done?.reason], ["failed", 3, "the command exited with code 3"]);
      assert.deepEqual([done?.logs_truncated, done?.logs_incomplete], [1, 1]);
      const w = await p.store.workers.get(worker.id);
      assert.deepEqual([w?.state, w?.exit_code, w?.failure_reason], ["destroying", 3, ""]);
      const [attempt] = (await p.api.getJob({ id: job.id })).attemptHistory;
      assert.deepEqual([attempt.exitCode, attempt.reason, attempt.failureReason], [3, "the command exited with code 3", ""]);
    });

    it("never retries a timed-out or a canceled result, even with any", async () => {
      const timed = await p.running({ maxAttempts: 3, retryOnExitCodes: "any" });
      timed.stream.send({ case: "result", value: { exitCode: 143, timedOut: true, lastSeq: 0n } });
      await timed.stream.next();
      timed.stream.outgoing.close();
      assert.equal((await p.store.jobs.get(timed.job.id))?.state, "timed_out");
      const canceled = await p.running({ maxAttempts: 3, retryOnExitCodes: "any" });
      canceled.stream.send({ case: "result", value: { exitCode: 143, canceled: true, lastSeq: 0n } });
      await canceled.stream.next();
      canceled.stream.outgoing.close();
      assert.equal((await p.store.jobs.get(canceled.job.id))?.state, "canceled");
    });

    it("leaves a job canceled meanwhile canceled, and promises no retry in its log", async () => {
      const { job, worker, stream } = await p.running({ maxAttempts: 3, retryOnExitCodes: "any" });
      assert.ok(await p.store.jobs.transition(job.id, "canceled", p.clock.nowMs(), { reason: "canceled by user" }));
      stream.send({ case: "result", value: { exitCode: 3, lastSeq: 0n } });
      assert.equal((await stream.next()).kind.case, "resultAck");
      stream.outgoing.close();
      const done = await p.store.jobs.get(job.id);
      assert.deepEqual([done?.state, done?.reason, done?.attempts], ["canceled", "canceled by user", 1]);
      assert.equal((await p.store.workers.get(worker.id))?.state, "destroying");
      assert.deepEqual(await stored(job.id), []);
    });

    it("keeps a successful attempt's exit code 0 on its worker", async () => {
      const { job, worker, stream } = await p.running({ maxAttempts: 2, retryOnExitCodes: "any" });
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
      await stream.next();
      stream.outgoing.close();
      assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");
      assert.equal((await p.store.workers.get(worker.id))?.exit_code, 0);
      const [attempt] = (await p.api.getJob({ id: job.id })).attemptHistory;
      assert.deepEqual([attempt.exitCode, attempt.reason], [0, "the command exited with code 0"]);
    });
  });

  it("logs a failed store of a result at error with the worker and job ids, and ends the stream so the agent resends it", async () => {
    const { job, worker, stream } = await p.running();
    const end = p.store.attempts.end;
    p.store.attempts.end = async () => {
      throw new Error("disk I/O error");
    };
    try {
      stream.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
      const error = await stream.end();
      stream.outgoing.close();
      assert.equal(error?.code, Code.Internal);
    } finally {
      p.store.attempts.end = end;
    }
    const line = p.lines.find((l) => l.msg.startsWith("could not record the result") && l.workerId === worker.id);
    assert.equal(line?.level, 50, "logged at error");
    assert.equal(line?.jobId, job.id);
    assert.equal(line?.err?.message, "disk I/O error");
    assert.equal((await p.store.jobs.get(job.id))?.state, "running", "nothing was recorded");
  });
});
