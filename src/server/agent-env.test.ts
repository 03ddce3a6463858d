import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readAgentConfig } from "../agent/config.js";
import { agentEnvOf } from "./agent-env.js";

const base = { registrationTimeoutMs: 60_000, reconnectWindowMs: 120_000 };

describe("the agent's settings from the server", () => {
  it("gives the agent its defaults' keep-alive with the default heartbeat timeout", () => {
    assert.deepEqual(agentEnvOf({ ...base, heartbeatTimeoutMs: 30_000 }), {
      HODEI_REGISTER_TIMEOUT_MS: "60000",
      HODEI_RECONNECT_WINDOW_MS: "120000",
      HODEI_AGENT_PING_INTERVAL_MS: "10000",
      HODEI_AGENT_PING_TIMEOUT_MS: "10000",
      GLIBC_TUNABLES: "glibc.malloc.hugetlb=1",
      HODEI_AGENT_OWN_ENV: "GLIBC_TUNABLES",
    });
  });

  it("tunes the agent's malloc, and its jobs get none of it: their base environment is the rest of the agent's", () => {
    const env: Record<string, string> = { PATH: "/usr/bin:/bin", HOME: "/root", HODEI_SERVER_URL: "http://127.0.0.1:7070", HODEI_PROVIDER: "docker", ...agentEnvOf({ ...base, heartbeatTimeoutMs: 30_000 }) };
    assert.equal(env.GLIBC_TUNABLES, "glibc.malloc.hugetlb=1");
    assert.deepEqual(readAgentConfig(env).baseEnv, { PATH: "/usr/bin:/bin", HOME: "/root" });
    // Without the server's list (an older server), the agent's environment passes on as before.
    assert.deepEqual(readAgentConfig({ HODEI_SERVER_URL: "http://127.0.0.1:7070", GLIBC_TUNABLES: "glibc.malloc.check=3" }).baseEnv, { GLIBC_TUNABLES: "glibc.malloc.check=3" });
  });

  it("keeps the agent's detection of a dead connection under any heartbeat timeout, as the agent reads it", () => {
    for (const heartbeatTimeoutMs of [200, 1000, 3000, 10_000, 29_999, 30_000, 3_600_000]) {
      const agent = readAgentConfig({ HODEI_SERVER_URL: "http://127.0.0.1:7070", HODEI_PROVIDER: "local", ...agentEnvOf({ ...base, heartbeatTimeoutMs }) });
      const detectMs = agent.pingIntervalMs + agent.pingTimeoutMs;
      assert.ok(detectMs < heartbeatTimeoutMs, `heartbeat timeout ${heartbeatTimeoutMs} ms: the agent notices in ${detectMs} ms`);
      assert.ok(agent.pingIntervalMs <= 10_000 && agent.pingTimeoutMs <= 10_000, "never slower than the agent's defaults");
    }
  });

  it("passes the CA that verifies the server when there is one", () => {
    assert.equal(agentEnvOf({ ...base, heartbeatTimeoutMs: 30_000 }, "-----BEGIN CERTIFICATE-----\n").HODEI_TLS_CA_PEM, "-----BEGIN CERTIFICATE-----\n");
    assert.equal("HODEI_TLS_CA_PEM" in agentEnvOf({ ...base, heartbeatTimeoutMs: 30_000 }), false);
  });
});
