/**
 * An agent that keeps sending but never reads what the server answers, against a real gRPC (HTTP/2)
 * server: what the server queues for it stays bounded, and what it is owed still reaches it once it
 * reads again.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { chunk, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { AsyncQueue } from "../core/async-queue.js";
import { type AgentMessage, AgentMessageSchema, type ServerMessage, WorkerService } from "../gen/hodei/v1/worker_pb.js";
import type { AgentStream } from "./agent-stream.js";
import type { SessionRegistry } from "./worker-service.js";

/**
 * Messages sent unread: more answers than the agent's window and the server's HTTP/2 stream buffer
 * hold (about 1,700 acks).
 */
const BATCHES = 3_000;

/** The stream the server keeps for a worker (SessionRegistry keeps its streams to itself). */
const streamOf = (sessions: SessionRegistry, workerId: string) => (sessions as unknown as { streams: Map<string, AgentStream> }).streams.get(workerId);

describe("an agent that does not read its stream", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol();
  });
  after(async () => {
    await p.close();
  });

  /**
   * A Connect stream whose HTTP/2 stream window is small (1 KiB), so that the server's stream buffer
   * and the agent's window fill after about 1,500 acks rather than several thousand: the same attack, quicker.
   */
  function openUnread(sessionToken: string) {
    const client = createClient(WorkerService, createGrpcTransport({ baseUrl: p.url, nodeOptions: { settings: { initialWindowSize: 1024 } } }));
    const outgoing = new AsyncQueue<AgentMessage>();
    const responses = client.connect(outgoing, { headers: { authorization: `Bearer ${sessionToken}` } })[Symbol.asyncIterator]();
    return {
      outgoing,
      send: (kind: MessageInitShape<typeof AgentMessageSchema>["kind"]) => outgoing.push(create(AgentMessageSchema, { kind })),
      next: async (): Promise<ServerMessage> => {
        const result = await responses.next();
        if (result.done) throw new Error("the stream ended");
        return result.value;
      },
    };
  }

  /** Waits until the server has read the agent's messages up to `isRead` (they are read in order). */
  async function untilRead(isRead: () => Promise<boolean>): Promise<void> {
    for (let waited = 0; !(await isRead()); waited++) {
      assert.ok(waited < 3000, "the server read every message within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await new Promise((resolve) => setImmediate(resolve)); // the answer to the last one is queued after its write
  }

  it("keeps one ack queued for an agent that sends log batches and heartbeats but never reads, and sends the latest once it reads", async (t) => {
    const { worker, job, otp } = await p.provision();
    const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "key-1" });
    const stream = openUnread(reg.sessionToken);
    stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    for (let seq = 1; seq <= BATCHES; seq++) {
      stream.send({ case: "logs", value: { chunks: [chunk(seq, "x")] } });
      if (seq % 100 === 0) stream.send({ case: "heartbeat", value: { timeMs: 1n } });
    }
    await untilRead(async () => (await p.store.workers.get(worker.id))?.log_seq === BATCHES);
    const queued = streamOf(p.sessions, worker.id)?.out.size;
    t.diagnostic(`queued for the agent after ${BATCHES} unread acks: ${queued}`);
    // Exactly one, not none: Connect stopped taking messages once the agent's window and the
    // server's HTTP/2 stream buffer were full (it waits for 'drain'), so nothing piles up there either.
    assert.equal(queued, 1, `the server queued ${queued} messages for an agent that does not read`);

    // The agent reads again: it learns that its last batch is stored, and ends as usual.
    let seen = 0n;
    while (seen < BigInt(BATCHES)) {
      const message = await stream.next();
      if (message.kind.case !== "ack") continue;
      assert.ok(message.kind.value.seq >= seen, "acks never go back");
      seen = message.kind.value.seq;
    }
    stream.send({ case: "result", value: { exitCode: 0, lastSeq: BigInt(BATCHES) } });
    assert.equal((await stream.next()).kind.case, "resultAck");
    stream.outgoing.close();
    assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");
  });

  it("refuses a second hello, and a second result, on one stream (each would cost a dispatch or a record again)", async () => {
    const { job, otp } = await p.provision();
    const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "key-1" });
    const readAll = async (stream: ReturnType<typeof openUnread>) => {
      const kinds: string[] = [];
      try {
        for (;;) kinds.push((await stream.next()).kind.case ?? "");
      } catch (err) {
        return { kinds, error: err as Error };
      }
    };
    const first = openUnread(reg.sessionToken);
    first.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    first.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    const hellos = await readAll(first);
    assert.match(hellos.error.message, /\[invalid_argument\] hello: sent once per stream/);
    assert.equal(hellos.kinds.filter((k) => k === "run").length, 1, "one RunJob for the one hello read");

    // On a new stream (what a real agent does after a refusal), the result is recorded once.
    const second = openUnread(reg.sessionToken);
    second.send({ case: "hello", value: { started: true, lastSeq: 0n } });
    second.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
    second.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
    const results = await readAll(second);
    assert.match(results.error.message, /\[invalid_argument\] result: already recorded on this stream/);
    assert.deepEqual(results.kinds.filter((k) => k === "resultAck"), ["resultAck"]);
    assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");
  });
});
