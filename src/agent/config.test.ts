/**
 * The agent's assignment: read from the environment (a pod, the token from its Secret), after which
 * the token is gone from that environment; parsed from the stdin line (local and Docker) with errors
 * that never repeat the line, which holds the token.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { constants, mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { MAX_ASSIGNMENT_BYTES, parseAssignment, readAgentConfig, readAssignmentFrom, readAssignmentLine, takeAssignmentFromEnv } from "./config.js";

const TOKEN = "hodei_otp_secret-value";

describe("the agent's assignment", () => {
  it("is taken from the environment when HODEI_OTP_TOKEN is set, and the token leaves the environment", () => {
    const env: NodeJS.ProcessEnv = {
      HODEI_OTP_TOKEN: TOKEN,
      HODEI_WORKER_ID: "w1",
      HODEI_WORKER_NAME: "hodei-worker-w1",
      HODEI_JOB_ID: "j1",
      HODEI_ATTEMPT: "2",
      HODEI_SERVER_URL: "http://s",
    };
    assert.deepEqual(takeAssignmentFromEnv(env), { otpToken: TOKEN, workerId: "w1", workerName: "hodei-worker-w1", jobId: "j1", attempt: 2, workDir: "/tmp/hodei-work" });
    assert.equal("HODEI_OTP_TOKEN" in env, false, "nothing started later inherits the token");
    assert.equal(env.HODEI_SERVER_URL, "http://s", "the rest stays");
  });

  it("is awaited on stdin when the environment has no token", () => {
    const env: NodeJS.ProcessEnv = { HODEI_WORKER_ID: "w1", HODEI_SERVER_URL: "http://s" };
    assert.equal(takeAssignmentFromEnv(env), null);
    assert.deepEqual(env, { HODEI_WORKER_ID: "w1", HODEI_SERVER_URL: "http://s" });
  });

  it("is parsed from the stdin line, refusing a missing field or a malformed line without repeating it", () => {
    const line = JSON.stringify({ otpToken: TOKEN, workerId: "w1", workerName: "n", jobId: "j", attempt: 1, workDir: "/tmp/w" });
    assert.equal(parseAssignment(line).otpToken, TOKEN);
    assert.throws(() => parseAssignment(JSON.stringify({ otpToken: TOKEN, workerId: "w1" })), /assignment: workerName is missing/);
    for (const bad of [`{"otpToken":"${TOKEN}"`, `${TOKEN}`, "null"]) {
      assert.throws(
        () => parseAssignment(bad),
        (err: Error) => err.message.startsWith("assignment: not a JSON object") && !err.message.includes("hodei_otp_"),
      );
    }
  });
});

/** A FIFO in a fresh directory: its path, and a cleanup. */
function fifo(): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "hodei-assign-"));
  const path = join(dir, "stdin");
  execFileSync("mkfifo", [path]);
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Both ends of the FIFO at path, closed after the test. */
async function openEnds(t: { after(fn: () => unknown): void }, path: string) {
  const [reader, writer] = await Promise.all([open(path, "r"), open(path, "w")]);
  t.after(() => Promise.all([reader.close(), writer.close()]));
  return { reader, writer };
}

const noFallback = (): NodeJS.ReadableStream => assert.fail("a blocking descriptor is read without the stream");

describe("the assignment line, read from a descriptor (the agent's stdin)", () => {
  it("is the first line, whole when it comes in pieces, and nothing after its end", async (t) => {
    const { path, remove } = fifo();
    t.after(remove);
    const { reader, writer } = await openEnds(t, path);
    const line = readAssignmentFrom(reader.fd, noFallback);
    await writer.write('{"otpToken":"hodei_otp_');
    await new Promise((resolve) => setTimeout(resolve, 20)); // a read returns the first piece alone
    await writer.write('x","workerId":"w1"}\n{"next":"line"}\n');
    assert.equal(await line, '{"otpToken":"hodei_otp_x","workerId":"w1"}');
  });

  it("is what came before the end when no line end came, and null when nothing came (let go while idle)", async (t) => {
    const { path, remove } = fifo();
    t.after(remove);
    for (const [written, expected] of [["no line end", "no line end"], ["", null]] as const) {
      const [reader, writer] = await Promise.all([open(path, "r"), open(path, "w")]);
      const line = readAssignmentFrom(reader.fd, noFallback);
      if (written) await writer.write(written);
      await writer.close();
      assert.equal(await line, expected);
      await reader.close();
    }
  });

  it("is refused past MAX_ASSIGNMENT_BYTES without a line end, from the descriptor and from a stream", async (t) => {
    const { path, remove } = fifo();
    t.after(remove);
    const { reader, writer } = await openEnds(t, path);
    const line = readAssignmentFrom(reader.fd, noFallback);
    const endless = writer.write(Buffer.alloc(MAX_ASSIGNMENT_BYTES + 1, "a")).catch(() => {});
    await assert.rejects(line, /no line end within 65536 bytes/);
    await reader.close();
    await endless;
    const stream = new PassThrough();
    const fromStream = readAssignmentLine(stream);
    stream.write(Buffer.alloc(MAX_ASSIGNMENT_BYTES + 1, "a"));
    await assert.rejects(fromStream, /no line end within 65536 bytes/);
  });

  it("is read from the stream, after what the descriptor gave, when the descriptor does not block (EAGAIN)", async (t) => {
    const { path, remove } = fifo();
    t.after(remove);
    const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = await open(path, "w"); // with a writer, an empty FIFO answers EAGAIN rather than its end
    t.after(() => Promise.all([reader.close(), writer.close()]));
    await writer.write('{"otpToken":');
    const stream = new PassThrough();
    let usedStream = false;
    const line = readAssignmentFrom(reader.fd, () => {
      usedStream = true;
      return stream;
    });
    await new Promise((resolve) => setImmediate(resolve));
    stream.end('"t"}\nrest');
    assert.equal(await line, '{"otpToken":"t"}');
    assert.equal(usedStream, true);
  });
});

describe("an idle agent's crash while its assignment is read", () => {
  // A child reads a pipe that never sends, then throws: Node's exit would wait for the read for ever.
  const child = (guarded: boolean) => {
    const script = guarded
      ? 'import { endOnCrashWhile, readAssignmentFrom } from "./src/agent/config.ts"; setTimeout(() => { throw new Error("a bug"); }, 50); await endOnCrashWhile(readAssignmentFrom(0, () => process.stdin), (m, f) => console.error(m, JSON.stringify(f)));'
      : 'import { readAssignmentFrom } from "./src/agent/config.ts"; setTimeout(() => { throw new Error("a bug"); }, 50); await readAssignmentFrom(0, () => process.stdin);';
    const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => (stderr += d));
    return { proc, stderr: () => stderr };
  };

  it("ends it by SIGKILL, saying why, rather than leaving it stuck in its exit", async (t) => {
    const { proc, stderr } = child(true);
    t.after(() => proc.kill("SIGKILL"));
    const [code, signal] = (await once(proc, "exit")) as [number | null, string | null];
    assert.deepEqual({ code, signal }, { code: null, signal: "SIGKILL" });
    assert.match(stderr(), /agent failed while waiting for its assignment \{"error":"a bug"\}/);
  });

  it("(the hazard itself: without it, the same crash leaves the process alive)", async (t) => {
    const { proc } = child(false);
    t.after(() => proc.kill("SIGKILL"));
    const exited = once(proc, "exit").then(() => true);
    const exitedInTime = await Promise.race([exited, new Promise<false>((resolve) => setTimeout(() => resolve(false), 3000))]);
    assert.equal(exitedInTime, false, "the unguarded process exited by itself: the guard would be needless");
    proc.stdin.end(); // the read returns; the exit completes
    assert.equal(await exited, true);
  });
});

describe("the agent's boot trace", () => {
  it("is on with HODEI_AGENT_BOOT_TRACE=1 only", () => {
    assert.equal(readAgentConfig({ HODEI_SERVER_URL: "http://s", HODEI_AGENT_BOOT_TRACE: "1" }).bootTrace, true);
    for (const value of [undefined, "", "0", "true"]) assert.equal(readAgentConfig({ HODEI_SERVER_URL: "http://s", HODEI_AGENT_BOOT_TRACE: value }).bootTrace, false);
  });

  it("refuses a duration that is not a positive whole number of ms, naming the variable (NaN made register retry for ever)", () => {
    for (const name of ["HODEI_REGISTER_TIMEOUT_MS", "HODEI_RECONNECT_WINDOW_MS", "HODEI_LOG_FLUSH_INTERVAL_MS"]) {
      for (const value of ["abc", "-5", "0", "1.5"]) {
        assert.throws(() => readAgentConfig({ HODEI_SERVER_URL: "http://s", [name]: value }), new RegExp(`${name} must be a positive whole number of milliseconds \\(got "${value.replace(".", "\\.")}"\\)`));
      }
    }
    const config = readAgentConfig({ HODEI_SERVER_URL: "http://s", HODEI_REGISTER_TIMEOUT_MS: "1500", HODEI_RECONNECT_WINDOW_MS: "", HODEI_LOG_FLUSH_INTERVAL_MS: "10" });
    assert.deepEqual([config.registerTimeoutMs, config.reconnectWindowMs, config.flushIntervalMs], [1500, 120_000, 10]);
  });
});
