/**
 * An idle (warm) agent opens the stream its Register will go on before its assignment arrives, with
 * the built agent (dist/agent.cjs) as workers run it and its assignment on stdin:
 * - the Register goes on a stream opened before the assignment was written, and no new one opens;
 * - a ready stream the server ends unused (its register wait) is replaced by another;
 * - against a control plane of an earlier release (every stream needs a session), the agent falls
 *   back to the unary Register and finishes its attempt.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServerMessageSchema } from "../src/gen/hodei/v1/worker_pb.js";
import { cancelAfterHello, REGISTERED, serveEarlierRelease, serveWorkerService } from "./fixtures/agent-network.js";
import { ROOT } from "./e2e/harness.js";

type ServerReply = MessageInitShape<typeof ServerMessageSchema>;

/** The agent's start, with room to spare on a busy machine. */
const BOOT_ALLOWANCE_MS = 4000;

interface IdleAgent {
  child: ChildProcess;
  stderr(): string;
  assign(): void;
  exitWithin(waitMs: number): Promise<number | null | "running">;
  stop(): Promise<void>;
}

/** The built agent without an assignment: it waits for one on stdin, as a warm worker does. */
function startIdleAgent(serverUrl: string, workDir: string): IdleAgent {
  const child = spawn(process.execPath, [join(ROOT, "dist", "agent.cjs")], {
    stdio: ["pipe", "ignore", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HODEI_SERVER_URL: serverUrl, HODEI_REGISTER_TIMEOUT_MS: "3000" },
  });
  let stderr = "";
  child.stderr!.on("data", (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const exitWithin = (waitMs: number) => Promise.race([exited, new Promise<"running">((resolve) => setTimeout(() => resolve("running"), waitMs).unref())]);
  return {
    child,
    stderr: () => stderr,
    assign: () => child.stdin!.end(`${JSON.stringify({ otpToken: "hodei_otp_ready", workerId: "w1", workerName: "hodei-worker-w1", jobId: "j1", attempt: 1, workDir })}\n`),
    exitWithin,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exitWithin(5000);
    },
  };
}

/** Resolves when check() holds, polling; rejects with `what` after waitMs. */
async function until(check: () => boolean, waitMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${waitMs} ms: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("an idle agent's ready stream", () => {
  it("carries the Register, opened before the assignment; one the server ends unused is replaced", async () => {
    const events: string[] = [];
    let streams = 0;
    const server = await serveWorkerService({
      async *connect(requests, context): AsyncGenerator<ServerReply> {
        const n = ++streams;
        events.push(`open ${n} ${context.requestHeader.get("authorization") ?? "without a session"}`);
        const it = requests[Symbol.asyncIterator]();
        if (n === 1) {
          // As the server does when no Register comes within its register wait (after a second, so
          // that the agent opens the next one at once).
          await new Promise((resolve) => setTimeout(resolve, 1100));
          events.push("end 1 unused");
          throw new ConnectError("no register from the agent for 1100 ms (register wait 1000 ms); stream closed", Code.Unavailable);
        }
        const first = await it.next();
        events.push(`stream ${n}: ${first.done ? "end" : first.value.kind.case}`);
        if (first.done || first.value.kind.case !== "register") return;
        yield { kind: { case: "registered", value: REGISTERED } };
        yield* cancelAfterHello({ [Symbol.asyncIterator]: () => it });
      },
    });
    const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-ready-"));
    const agent = startIdleAgent(`http://127.0.0.1:${server.port}`, workDir);
    try {
      await until(() => streams >= 2, BOOT_ALLOWANCE_MS + 3000, () => `streams opened: ${streams}; the agent's log:\n${agent.stderr()}`);
      events.push("assigned");
      agent.assign();
      assert.equal(await agent.exitWithin(BOOT_ALLOWANCE_MS), 0, `the agent ends its attempt; its log:\n${agent.stderr()}`);
      assert.deepEqual(events, ["open 1 without a session", "end 1 unused", "open 2 without a session", "assigned", "stream 2: register"]);
    } finally {
      await agent.stop();
      await server.close();
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("falls back to the unary Register when the control plane refuses streams without a session, and finishes its attempt", async () => {
    const calls: string[] = [];
    const server = await serveEarlierRelease(calls);
    const workDir = mkdtempSync(join(tmpdir(), "hodei-agent-ready-"));
    const agent = startIdleAgent(`http://127.0.0.1:${server.port}`, workDir);
    try {
      await until(() => calls.length >= 1, BOOT_ALLOWANCE_MS, () => `no stream; the agent's log:\n${agent.stderr()}`);
      // The refusal reaches the agent, which then opens no other stream ahead.
      await new Promise((resolve) => setTimeout(resolve, 300));
      agent.assign();
      assert.equal(await agent.exitWithin(BOOT_ALLOWANCE_MS), 0, `the agent ends its attempt; its log:\n${agent.stderr()}`);
      assert.deepEqual(calls, ["connect without a session", "register hodei_otp_ready", "connect Bearer s"]);
    } finally {
      await agent.stop();
      await server.close();
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});
