/**
 * The CLI's connection to the control plane: Connect clients of hodei.v1.JobService, KeyService and ScheduleService
 * over HTTP/1.1 (the same protocol plain curl speaks). The server URL comes from the global --server
 * option, else HODEI_SERVER_URL, else http://127.0.0.1:7070 (resolved by config.ts, the only reader
 * of the env); the API key from credentials.ts. An https:// server is verified with the CA file of
 * --ca-cert, else HODEI_TLS_CA, else the system's roots.
 */
import { readFileSync } from "node:fs";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Command } from "commander";
import { clientCaCertPath, clientServerUrl } from "../config.js";
import { JobService, KeyService, ScheduleService } from "../gen/hodei/v1/api_pb.js";
import { apiKeyOf, sendApiKey } from "./credentials.js";
import { CliError, USAGE_EXIT_CODE } from "./errors.js";

export type ApiClient = Client<typeof JobService>;
export type KeyClient = Client<typeof KeyService>;
export type ScheduleClient = Client<typeof ScheduleService>;

export interface CliContext {
  client: ApiClient;
  keys: KeyClient;
  schedules: ScheduleClient;
  serverUrl: string;
}

/** The server URL in effect for this command line (global --server, then the environment). */
export function serverUrlOf(command: Command): string {
  return clientServerUrl(command.optsWithGlobals<{ server?: string }>().server);
}

/** A client for the command's server. Creating it opens no connection. */
export function connect(command: Command): CliContext {
  const serverUrl = serverUrlOf(command);
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    url = new URL("invalid:");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError(
      `invalid server URL "${serverUrl}": expected http://HOST:PORT or https://HOST:PORT (set --server or HODEI_SERVER_URL)`,
      USAGE_EXIT_CODE,
    );
  }
  const ca = readCaCert(clientCaCertPath(command.optsWithGlobals<{ caCert?: string }>().caCert));
  const transport = createConnectTransport({
    baseUrl: serverUrl,
    httpVersion: "1.1",
    nodeOptions: ca ? { ca } : undefined,
    interceptors: [sendApiKey(apiKeyOf(command, serverUrl))],
  });
  return { client: createClient(JobService, transport), keys: createClient(KeyService, transport), schedules: createClient(ScheduleService, transport), serverUrl };
}

function readCaCert(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(`cannot read the CA certificate ${path} (--ca-cert or HODEI_TLS_CA): ${(err as Error).message}`, USAGE_EXIT_CODE, { cause: err });
  }
}
