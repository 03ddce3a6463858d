/**
 * The CLI's settings from its environment: where the server is, the API key, the CA file. Apart
 * from config.ts (which re-exports these), the only reader of process.env outside the agent; it
 * depends only on a pure helper of core, so a CLI command does not load the server's configuration
 * schema to start.
 */
import { join, resolve } from "node:path";

export { isLoopbackHost } from "./core/loopback.js";

/** The CLI's settings: where the server is. */
export function clientServerUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.HODEI_SERVER_URL ?? "http://127.0.0.1:7070";
}

/** The CLI's API key, when given: --token, else HODEI_TOKEN (else the CLI may read admin.key). */
export function clientToken(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return flag ?? (env.HODEI_TOKEN || undefined);
}

/** Where the CLI looks for admin.key when it talks to a server on this machine: HODEI_DATA_DIR, as the server does. */
export function clientAdminKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(resolve(env.HODEI_DATA_DIR || ".hodei"), "admin.key");
}

/** Where `hodei image build` keeps the agent runtime (--data-dir, else HODEI_DATA_DIR, as the server does). */
export function clientDataDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env.HODEI_DATA_DIR || ".hodei");
}

/** The Docker daemon `hodei image build` talks to: HODEI_DOCKER_SOCKET, as the server's Docker provider. */
export function clientDockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.HODEI_DOCKER_SOCKET || "/var/run/docker.sock";
}

/**
 * The CLI's CA certificate file (PEM) for an https:// server: --ca-cert, else HODEI_TLS_CA.
 * Undefined: the system's roots verify the server.
 */
export function clientCaCertPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return flag ?? (env.HODEI_TLS_CA || undefined);
}
