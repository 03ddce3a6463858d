/**
 * The CLI's connection to the control plane, made by the hodei/client code (src/client): one
 * transport, with the high-level client (`hodei`: jobs, logs, wait, schedules) and the generated
 * Connect clients of JobService and KeyService for the other calls. The server URL comes from the global
 * --server option, else HODEI_SERVER_URL, else http://127.0.0.1:7070 (client-config.ts); the API
 * key from credentials.ts. An https:// server is verified with the CA file of --ca-cert, else
 * HODEI_TLS_CA, else the system's roots.
 */
import { readFileSync } from "node:fs";
import type { Client } from "@connectrpc/connect";
import type { Command } from "commander";
import { clientCaCertPath, clientServerUrl } from "../client-config.js";
import { createClientOn, type HodeiClient } from "../client/client.js";
import { InvalidArgumentError } from "../client/errors.js";
import { createApiClients, createTransport } from "../client/transport.js";
import type { JobService, KeyService } from "../gen/hodei/v1/api_pb.js";
import { adminKeyGuard, apiKeyOf, explainApiKey } from "./credentials.js";
import { CliError, USAGE_EXIT_CODE } from "./errors.js";

export type ApiClient = Client<typeof JobService>;
export type KeyClient = Client<typeof KeyService>;

export interface CliContext {
  /** The hodei/client API: submit, get, list, cancel, rerun, logs, wait, schedules. */
  hodei: HodeiClient;
  client: ApiClient;
  keys: KeyClient;
  serverUrl: string;
}

/** The server URL in effect for this command line (global --server, then the environment). */
export function serverUrlOf(command: Command): string {
  return clientServerUrl(command.optsWithGlobals<{ server?: string }>().server);
}

/** A client for the command's server. Creating it opens no connection. */
export function connect(command: Command): CliContext {
  const serverUrl = serverUrlOf(command);
  const caCert = readCaCert(clientCaCertPath(command.optsWithGlobals<{ caCert?: string }>().caCert));
  const key = apiKeyOf(command, serverUrl);
  let transport;
  try {
    transport = createTransport({ baseUrl: serverUrl, token: key.key, caCert }, [adminKeyGuard(key), explainApiKey(key)]);
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    throw new CliError(
      `invalid server URL "${serverUrl}": expected http://HOST:PORT or https://HOST:PORT (set --server or HODEI_SERVER_URL)`,
      USAGE_EXIT_CODE,
    );
  }
  const { jobs, keys } = createApiClients(transport);
  return { hodei: createClientOn(transport), client: jobs, keys, serverUrl };
}

function readCaCert(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(`cannot read the CA certificate ${path} (--ca-cert or HODEI_TLS_CA): ${(err as Error).message}`, USAGE_EXIT_CODE, { cause: err });
  }
}
