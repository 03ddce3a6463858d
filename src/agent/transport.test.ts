/**
 * The agent's connection to the control plane (transport.ts), built from its configuration as the
 * agent builds it: a stream on a connection that went silent (TCP half-open) fails within the
 * keep-alive's bound, and the next call dials anew; the keep-alive's settings and their defaults.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { AsyncQueue } from "../core/async-queue.js";
import { type AgentMessage, AgentMessageSchema, WorkerService } from "../gen/hodei/v1/worker_pb.js";
import { serveWorkerService, startSilentProxy } from "../../test/fixtures/agent-network.js";
import { readAgentConfig } from "./config.js";
import { createAgentTransport } from "./transport.js";

const PING_INTERVAL_MS = 200;
const PING_TIMEOUT_MS = 200;
/** Far more than the keep-alive's bound (400 ms) plus scheduling noise, far less than TCP's ~15 minutes. */
const GIVE_UP_MS = 5000;

const hello = () => create(AgentMessageSchema, { kind: { case: "hello", value: { started: false, lastSeq: 0n } } });

describe("the agent's connection", () => {
  it("fails a stream whose connection went silent within the ping interval and timeout, and dials anew for the next", async () => {
    // The server acknowledges each hello, then keeps the stream open without a word (a quiet job).
    const server = await serveWorkerService({
      async *connect(requests) {
        for await (const message of requests) if (message.kind.case === "hello") yield { kind: { case: "ack", value: { seq: 0n } } };
      },
    });
    const proxy = await startSilentProxy(server.port);
    const outgoing: AsyncQueue<AgentMessage>[] = [];
    try {
      const config = readAgentConfig({
        HODEI_SERVER_URL: `http://127.0.0.1:${proxy.port}`,
        HODEI_AGENT_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
        HODEI_AGENT_PING_TIMEOUT_MS: String(PING_TIMEOUT_MS),
      });
      const client = createClient(WorkerService, createAgentTransport(config).transport);
      const openStream = () => {
        const queue = new AsyncQueue<AgentMessage>();
        outgoing.push(queue);
        queue.push(hello());
        return client.connect(queue)[Symbol.asyncIterator]();
      };

      const first = openStream();
      assert.equal((await first.next()).value?.kind.case, "ack", "the stream is open");
      proxy.silence();
      const silencedAt = Date.now();
      const outcome = await Promise.race([
        first.next().then(
          (r) => `ended without an error (${r.done ? "done" : r.value.kind.case})`,
          (err: unknown) => ConnectError.from(err),
        ),
        new Promise<string>((resolve) => setTimeout(() => resolve(`still waiting ${GIVE_UP_MS} ms after the connection went silent`), GIVE_UP_MS).unref()),
      ]);
      const elapsedMs = Date.now() - silencedAt;
      assert.ok(outcome instanceof ConnectError, String(outcome));
      assert.equal(outcome.code, Code.Unavailable);
      assert.match(outcome.message, /PING timed out/);
      assert.ok(elapsedMs <= PING_INTERVAL_MS + PING_TIMEOUT_MS + 1000, `failed after ${elapsedMs} ms`);

      // The dead connection is gone: the next stream goes through a connection of its own.
      const second = openStream();
      assert.equal((await second.next()).value?.kind.case, "ack");
      assert.equal(proxy.connectionCount(), 2);
    } finally {
      for (const queue of outgoing) queue.close();
      await proxy.close();
      await server.close();
    }
  });
});

describe("the agent's keep-alive settings", () => {
  it("default to a PING after 10 s of silence, answered within 10 s", () => {
    const config = readAgentConfig({ HODEI_SERVER_URL: "http://s" });
    assert.equal(config.pingIntervalMs, 10_000);
    assert.equal(config.pingTimeoutMs, 10_000);
  });

  it("refuse anything but a positive whole number of ms, naming the variable", () => {
    for (const value of ["0", "-5", "1.5", "ten"]) {
      assert.throws(() => readAgentConfig({ HODEI_SERVER_URL: "http://s", HODEI_AGENT_PING_TIMEOUT_MS: value }), /HODEI_AGENT_PING_TIMEOUT_MS must be a positive whole number/);
    }
  });
});
