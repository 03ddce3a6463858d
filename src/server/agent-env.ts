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
 */
import type { ServerConfig } from "../config.js";

/** The agent's own default ping interval and timeout, ms (agent/config.ts). */
const AGENT_PING_DEFAULT_MS = 10_000;

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
    ...(caPem ? { HODEI_TLS_CA_PEM: caPem } : {}),
  };
}
