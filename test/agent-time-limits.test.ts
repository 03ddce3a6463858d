/**
 * The agent's time limits on the network, with the built agent (dist/agent.cjs) as workers run it
 * (and its Register with a control plane that takes it only as the unary call, an earlier release's):
 * - Register against a control plane that accepts connections and never answers (a bare TCP
 *   listener, an HTTP/2 server that never responds) fails by the register timeout, naming the URL;
 * - a stream whose connection goes silent (TCP half-open, through a proxy that stops forwarding
 *   without closing anything) is found dead within the keep-alive's bound, and the agent reconnects
 *   on a new connection and finishes its attempt.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServerMessageSchema } from "../src/gen/hodei/v1/worker_pb.js";
import { cancelAfterHello, REGISTERED, serveEarlierRelease, serveWorkerService, startSilentProxy } from "./fixtures/agent-network.js";
import { ROOT } from "./e2e/harness.js";

const REGISTER_TIMEOUT_MS = 1500;
const PING_INTERVAL_MS = 200;
const PING_TIMEOUT_MS = 200;
/** The agent's start, with room to spare on a busy machine. */
const BOOT_ALLOWANCE_MS = 4000;

type ServerReply = MessageInitShape<typeof ServerMessageSchema>;


interface RunningAgent {
  child: ChildProcess;
  stderr(): string;
  /** The exit code, or "running" if the agent has not exited within waitMs. */
  exitWithin(waitMs: number): Promise<number | null | "running">;
}

function startAgent(serverUrl: string, workDir: string, env: Record<string, string> = {}): RunningAgent {
  const child = spawn(process.execPath, [join(ROOT, "dist", "agent.cjs")], {
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HODEI_SERVER_URL: serverUrl,
      HODEI_OTP_TOKEN: "hodei_otp_time-limits",
      HODEI_WORKER_ID: "w1",
      HODEI_WORKER_NAME: "hodei-worker-w1",
      HODEI_JOB_ID: "j1",
      HODEI_ATTEMPT: "1",
      HODEI_WORK_DIR: workDir,
      HODEI_REGISTER_TIMEOUT_MS: String(REGISTER_TIMEOUT_MS),
      ...env,
    },
  });
  let stderr = "";
  child.stderr!.on("data", (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    stderr: () => stderr,
    exitWithin: (waitMs) => Promise.race([exited, new Promise<"running">((resolve) => setTimeout(() => resolve("running"), waitMs).unref())]),
  };
}

async function stopAgent(agent: RunningAgent): Promise<void> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
  agent.child.kill("SIGKILL");
  await agent.exitWithin(5000);
}

describe("the agent's Register", () => {
  const silentServers: [string, () => Promise<{ port: number; close(): Promise<void> }>][] = [
    [
      "a TCP listener that accepts and never answers",
      async () => {
        const held: net.Socket[] = [];
        const server = net.createServer((socket) => void held.push(socket));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const close = async () => {
          for (const socket of held) socket.destroy();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        };
        return { port: (server.address() as net.AddressInfo).port, close };
      },
    ],
    [
      "an HTTP/2 server that takes the call and never responds",
      async () => {
        const held: http2.ServerHttp2Session[] = [];
        const server = http2.createServer();
        server.on("session", (session) => {
          held.push(session);
          session.on("error", () => {}); // The agent cancels the connection it gives up on.
        });
        server.on("stream", (stream) => void stream.on("error", () => {})); // Never answered.
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const close = async () => {
          for (const session of held) session.destroy();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        };
        return { port: (server.address() as net.AddressInfo).port, close };
      },
    ],
  ];

  for (const [name, start] of silentServers) {
    it(`fails by its register timeout, naming the server's URL, against ${name}`, async () => {
      const server = await start();
      const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-limits-"));
      const serverUrl = `http://127.0.0.1:${server.port}`;
      const agent = startAgent(serverUrl, workDir);
      try {
        const code = await agent.exitWithin(REGISTER_TIMEOUT_MS + BOOT_ALLOWANCE_MS);
        assert.equal(code, 1, `the agent exits 1 by its register timeout (got ${code}); its log:\n${agent.stderr()}`);
        assert.match(agent.stderr(), new RegExp(`register with ${serverUrl} failed: no answer in \\d+ ms \\(register timeout ${REGISTER_TIMEOUT_MS} ms\\)`));
      } finally {
        await stopAgent(agent);
        await server.close();
        rmSync(workDir, { recursive: true, force: true });
      }
    });
  }
});

describe("the agent's Register with a control plane of an earlier release", () => {
  it("falls back to the unary Register when a stream without a session is refused for it, and finishes its attempt", async () => {
    // As such a server does: every stream needs a session; Register is the unary call.
    const calls: string[] = [];
    const server = await serveEarlierRelease(calls);
    const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-limits-"));
    const agent = startAgent(`http://127.0.0.1:${server.port}`, workDir);
    try {
      assert.equal(await agent.exitWithin(BOOT_ALLOWANCE_MS + 3000), 0, `the agent ends its attempt; its log:\n${agent.stderr()}`);
      assert.deepEqual(calls, ["connect without a session", "register hodei_otp_time-limits", "connect Bearer s"]);
    } finally {
      await stopAgent(agent);
      await server.close();
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});

describe("the agent's stream", () => {
  it("is found dead within the keep-alive's bound when its connection goes silent, and reconnects on a new one", async () => {
    // The worker protocol, reduced: Register answers a session (the job comes on the stream); each
    // stream's hello is acknowledged; the second stream is told to cancel, and the result then
    // acknowledged, which ends the agent.
    const hellos: number[] = [];
    let onHello: (streamNumber: number) => void = () => {};
    let streams = 0;
    const server = await serveWorkerService({
      register: () => REGISTERED,
      async *connect(requests): AsyncGenerator<ServerReply> {
        const streamNumber = ++streams;
        for await (const message of requests) {
          if (message.kind.case === "register") yield { kind: { case: "registered", value: REGISTERED } };
          if (message.kind.case === "hello") {
            hellos.push(Date.now());
            onHello(streamNumber);
            yield { kind: { case: "ack", value: { seq: 0n } } };
            if (streamNumber >= 2) yield { kind: { case: "cancel", value: { reason: "test over", graceMs: 100 } } };
          }
          if (message.kind.case === "result") {
            yield { kind: { case: "resultAck", value: {} } };
            return;
          }
        }
      },
    });
    const proxy = await startSilentProxy(server.port);
    const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-limits-"));
    const firstHello = new Promise<void>((resolve) => (onHello = () => resolve()));
    const agent = startAgent(`http://127.0.0.1:${proxy.port}`, workDir, {
      HODEI_AGENT_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      HODEI_AGENT_PING_TIMEOUT_MS: String(PING_TIMEOUT_MS),
    });
    try {
      await firstHello;
      // Let the hello's acknowledgement reach the agent, then the path goes silent both ways.
      await new Promise((resolve) => setTimeout(resolve, 100));
      proxy.silence();
      const silencedAt = Date.now();
      const secondHello = new Promise<boolean>((resolve) => {
        onHello = (n) => n >= 2 && resolve(true);
        setTimeout(() => resolve(false), 5000).unref();
      });
      assert.ok(await secondHello, `no second stream within 5 s of the connection going silent; the agent's log:\n${agent.stderr()}`);
      const reconnectedMs = hellos[hellos.length - 1] - silencedAt;
      // Found dead within interval + timeout of its last byte, then a reconnect (backoff 100 ms).
      assert.ok(reconnectedMs < PING_INTERVAL_MS + PING_TIMEOUT_MS + 1500, `reconnected ${reconnectedMs} ms after the silence`);
      assert.match(agent.stderr(), /"msg":"stream lost","error":"\[unavailable\] PING timed out"/);
      assert.equal(proxy.connectionCount(), 2, "the second stream has a connection of its own");
      assert.equal(await agent.exitWithin(5000), 0, `the agent ends its attempt; its log:\n${agent.stderr()}`);
    } finally {
      await stopAgent(agent);
      await proxy.close();
      await server.close();
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("is given up when the server takes it and never answers, and opened again on a new connection", async () => {
    // The first stream's hello gets no answer (the server acknowledges a hello at once otherwise).
    let streams = 0;
    let secondStreamAt = 0;
    const server = await serveWorkerService({
      register: () => REGISTERED,
      async *connect(requests): AsyncGenerator<ServerReply> {
        const streamNumber = ++streams;
        if (streamNumber === 2) {
          secondStreamAt = Date.now();
          yield* cancelAfterHello(requests);
          return;
        }
        for await (const message of requests) {
          if (message.kind.case === "register") yield { kind: { case: "registered", value: REGISTERED } };
        }
      },
    });
    const proxy = await startSilentProxy(server.port); // Never silenced: it counts the connections.
    const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-limits-"));
    const startedAt = Date.now();
    const agent = startAgent(`http://127.0.0.1:${proxy.port}`, workDir, {
      HODEI_AGENT_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      HODEI_AGENT_PING_TIMEOUT_MS: String(PING_TIMEOUT_MS),
    });
    try {
      const code = await agent.exitWithin(BOOT_ALLOWANCE_MS + 3000);
      assert.equal(code, 0, `the agent ends its attempt on a second stream (got ${code}); its log:\n${agent.stderr()}`);
      assert.equal(streams, 2);
      assert.ok(secondStreamAt - startedAt < BOOT_ALLOWANCE_MS + PING_INTERVAL_MS + PING_TIMEOUT_MS, `second stream ${secondStreamAt - startedAt} ms after the start`);
      assert.match(agent.stderr(), new RegExp(`"msg":"stream lost","error":"\\[deadline_exceeded\\] no answer from the control plane in ${PING_INTERVAL_MS + PING_TIMEOUT_MS} ms"`));
      assert.equal(proxy.connectionCount(), 2, "the stream was opened again on a new connection");
    } finally {
      await stopAgent(agent);
      await proxy.close();
      await server.close();
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});
