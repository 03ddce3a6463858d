/**
 * GetLogs through a real server: bytes come back exactly as the agent sent them, entries are
 * ordered and paged by (attempt, seq), and the cursor resumes after any entry.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { newId, workerName } from "../core/ids.js";
import { hashToken } from "../core/token.js";
import type { LogEntry } from "../gen/hodei/v1/api_pb.js";
import { chunk, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { claimOne } from "../../test/fixtures/claim.js";

describe("GetLogs", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol();
  });
  after(async () => {
    await p.close();
  });

  async function read(jobId: string, afterCursor = 0n, follow = false, endWithJob = false): Promise<LogEntry[]> {
    const entries: LogEntry[] = [];
    for await (const entry of p.api.getLogs({ jobId, afterCursor, follow, endWithJob })) entries.push(entry);
    return entries;
  }

  /** Sends chunks 1..n of `data(i)` and waits for their acknowledgement. */
  async function sendAll(stream: Awaited<ReturnType<WorkerProtocol["running"]>>["stream"], n: number, data: (i: number) => string, from = 1) {
    for (let start = from; start < from + n; start += 100) {
      const seqs = Array.from({ length: Math.min(100, from + n - start) }, (_, i) => start + i);
      stream.send({ case: "logs", value: { chunks: seqs.map((s) => chunk(s, data(s))) } });
      await stream.next();
    }
  }

  it("returns the bytes exactly as the job wrote them (not UTF-8: no replacement characters)", async () => {
    const { job, stream } = await p.running();
    stream.send({ case: "logs", value: { chunks: [chunk(1, Buffer.from([0x41, 0xff, 0xfe, 0x42]))] } });
    await stream.next();
    stream.outgoing.close();
    const [entry] = await read(job.id);
    assert.deepEqual([...entry.data], [0x41, 0xff, 0xfe, 0x42]);
  });

  it("orders entries by (attempt, seq) with cursors that increase and resume after any entry", async () => {
    const first = await p.running({ maxAttempts: 2 });
    await sendAll(first.stream, 3, (i) => `a1-${i}`);
    // The attempt is lost (its worker ends); the job is retried on a new worker.
    await p.store.attempts.end((await p.store.workers.get(first.worker.id))!, "queued", p.clock.nowMs(), { not_before_ms: 0 }, "lost");
    first.stream.outgoing.close();
    const otp = "hodei_otp_second";
    const claimed = await claimOne(p.store, "local", p.clock.nowMs(), (job) => {
      const id = newId();
      return {
        worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: "local", registrationDeadlineMs: p.clock.nowMs() + 60_000 },
        token: { id: newId(), tokenHash: hashToken(otp), expiresAtMs: p.clock.nowMs() + 60_000 },
      };
    });
    assert.equal(claimed?.job.id, first.job.id);
    await p.store.attempts.recordProvisioned(claimed.worker.id, "4321", "process_id", p.clock.nowMs());
    const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k2" });
    const second = p.openStream(reg.sessionToken);
    second.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    await second.next();
    await second.next();
    await sendAll(second, 2, (i) => `a2-${i}`);
    second.outgoing.close();

    const entries = await read(first.job.id);
    assert.deepEqual(
      entries.map((e) => [e.attempt, Number(e.seq), Buffer.from(e.data).toString()]),
      [
        [1, 1, "a1-1"],
        [1, 2, "a1-2"],
        [1, 3, "a1-3"],
        [2, 1, "a2-1"],
        [2, 2, "a2-2"],
      ],
    );
    assert.deepEqual(
      entries.map((e) => e.cursor),
      entries.map((e) => (BigInt(e.attempt) << 32n) + e.seq),
      "cursor = attempt * 2^32 + seq",
    );
    for (let i = 0; i < entries.length; i++) {
      const rest = await read(first.job.id, entries[i].cursor);
      assert.deepEqual(rest.map((e) => e.cursor), entries.slice(i + 1).map((e) => e.cursor), `resuming after entry ${i}`);
    }
  });

  it("pages through more than one page and, following, ends with the job after its last line", async () => {
    const { job, worker, stream } = await p.running();
    await sendAll(stream, 1234, (i) => `${i}\n`);
    stream.send({ case: "result", value: { exitCode: 0, lastSeq: 1234n } });
    await stream.next();
    stream.outgoing.close();
    assert.equal((await p.store.workers.get(worker.id))?.state, "destroying");
    const followed = await read(job.id, 0n, true);
    assert.equal(followed.length, 1234);
    assert.deepEqual(
      followed.map((e) => Number(e.seq)),
      Array.from({ length: 1234 }, (_, i) => i + 1),
    );
    assert.equal(Buffer.concat(followed.map((e) => e.data)).toString(), Array.from({ length: 1234 }, (_, i) => `${i + 1}\n`).join(""));
  });

  it("ends a follow that asks for it with the ended job, in an entry with no output whose cursor is the last one's", async () => {
    const { job, worker, stream } = await p.running();
    await sendAll(stream, 3, (i) => `line ${i}\n`);
    // Followed while the job runs: the end entry comes only once the result is stored.
    const following = read(job.id, 0n, true, true);
    await new Promise((r) => setTimeout(r, 50));
    stream.send({ case: "result", value: { exitCode: 7, lastSeq: 3n } });
    await stream.next();
    stream.outgoing.close();
    const followed = await following;
    assert.equal(followed.length, 4);
    const end = followed[3];
    assert.equal(end.job?.id, job.id);
    assert.equal(end.job?.state, "failed");
    assert.equal(end.job?.exitCode, 7);
    assert.equal(end.data.length, 0);
    assert.equal(end.cursor, followed[2].cursor);
    assert.ok(followed.slice(0, 3).every((e) => e.job === undefined));
    assert.equal((await p.store.workers.get(worker.id))?.state, "destroying");
    // Resuming after the end entry's cursor yields nothing more than the end again.
    const resumed = await read(job.id, end.cursor, true, true);
    assert.deepEqual(resumed.map((e) => [e.data.length, e.job?.state]), [[0, "failed"]]);
    // Not asked for (older clients), or without follow: no such entry.
    assert.equal((await read(job.id, 0n, true)).length, 3);
    assert.equal((await read(job.id, 0n, false, true)).length, 3);
  });

  it("ends the follow of a job without output with the job, cursor after_cursor", async () => {
    const { job, stream } = await p.running();
    stream.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
    await stream.next();
    stream.outgoing.close();
    const followed = await read(job.id, 0n, true, true);
    assert.deepEqual(followed.map((e) => [e.cursor, e.job?.state]), [[0n, "succeeded"]]);
  });

  it("refuses a negative cursor", async () => {
    const { job, stream } = await p.running();
    stream.outgoing.close();
    await assert.rejects(read(job.id, -1n), (err: unknown) => ConnectError.from(err).code === Code.InvalidArgument);
  });
});
