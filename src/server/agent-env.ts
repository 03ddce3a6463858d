/**
 * The settings every worker's agent gets from this server, through its environment (each provider
 * puts them in its workers' environment): the register timeout, the reconnect window, the
 * keep-alive of its connection, and the CA that verifies the server (a public certificate).
 *
 * The keep-alive follows the heartbeat timeout: an agent finds a silently dead connection within
 * its ping interval plus ping timeout and reconnects, so both are a third of the heartbeat timeout
 * (at most 10 s each, the agent's defaults), and the agent is back before the server gives its
 * worker up. Left at the agent's defaults, an operator's shorter HODEI_HEARTBEAT_TIMEOUT_MS (10 s,
 * say) had workers given up while their agents still waited 20 s to notice.
 *
 * And glibc's malloc in huge pages for the agent's own process (GLIBC_TUNABLES, AGENT_OWN_ENV): an
 * agent is a fresh process that copies each MB of a job's output several times (the log buffer,
 * protobuf's encoding, the gRPC frame) into memory it has never touched, and on a virtual machine
 * a page fault costs microseconds: encoding a LogBatch cost 16-21 ms per MB of output in a fresh
 * process, and 2.8 ms once its heap had grown (enc: 7 MB against 70 MB of output). With
 * glibc.malloc.hugetlb=1 (glibc 2.35 and later, and transparent huge pages in `madvise` or
 * `always` mode; otherwise it does nothing) malloc asks for huge pages, one fault per 2 MB. An idle
 * agent's memory did not change (VmRSS about 49 MB either way). The variable is the agent's own:
 * the agent keeps it from its jobs (agent/config.ts), which get the environment they got before.
 */
import type { ServerConfig } from "../config.js";

/** The agent's own default ping interval and timeout, ms (agent/config.ts). */
const AGENT_PING_DEFAULT_MS = 10_000;

/** Variables for the agent's process alone, kept from its jobs: glibc's malloc in transparent huge pages. */
const AGENT_OWN_ENV = { GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" };

export function agentKeepAliveMs(heartbeatTimeoutMs: number): number {
  return Math.max(1, Math.min(AGENT_PING_DEFAULT_MS, Math.floor(heartbeatTimeoutMs / 3)));
}

export function agentEnvOf(config: Pick<ServerConfig, "registrationTimeoutMs" | "reconnectWindowMs" | "heartbeatTimeoutMs">, caPem?: string): Record<string, string> {
  const keepAliveMs = String(agentKeepAliveMs(config.heartbeatTimeoutMs));
  return {
    HODEI_REGISTER_TIMEOUT_MS: String(config.registrationTimeoutMs),
    HODEI_RECONNECT_WINDOW_MS: String(config.reconnectWindowMs),
    HODEI_AGENT_PING_INTERVAL_MS: keepAliveMs,
    HODEI_AGENT_PING_TIMEOUT_MS: keepAliveMs,
    ...AGENT_OWN_ENV,
    HODEI_AGENT_OWN_ENV: Object.keys(AGENT_OWN_ENV).join(","),
    ...(caPem ? { HODEI_TLS_CA_PEM: caPem } : {}),
  };
}
