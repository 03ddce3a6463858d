/**
 * The agent's assignment: read from the environment (a pod, the token from its Secret), after which
 * the token is gone from that environment; parsed from the stdin line (local and Docker) with errors
 * that never repeat the line, which holds the token.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseAssignment, readAgentConfig, takeAssignmentFromEnv } from "./config.js";

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
