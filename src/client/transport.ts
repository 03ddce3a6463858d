/**
 * The connection to a Hodei server: Connect over HTTP/1.1 (the protocol plain curl speaks), the API
 * key as `Authorization: Bearer <key>` on every request, and for an https:// server the CA that
 * verifies it (else the system's roots). Creating a transport opens no connection.
 *
 * Responses are compressed (gzip or brotli, the server's choice of level) except from a server on
 * this machine: over loopback, compressing a job's output only costs both sides CPU (`hodei run`
 * of a job printing 7 MB took a quarter less time without it).
 */
import { type Client, createClient as createConnectClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { isLoopbackHost } from "../core/loopback.js";
import { JobService, KeyService, ScheduleService } from "../gen/hodei/v1/api_pb.js";
import { InvalidArgumentError } from "./errors.js";

export interface ClientOptions {
  /** The server: http://HOST:PORT or https://HOST:PORT. */
  baseUrl: string;
  /** An API key (`hodei keys create`). Without one, requests go unauthenticated and a server with auth on refuses them. */
  token?: string;
  /** CA certificate(s), PEM, that verify an https:// server instead of the system's roots. */
  caCert?: string | Buffer;
}

/** The generated Connect clients of the API services, on one transport. */
export interface ApiClients {
  jobs: Client<typeof JobService>;
  keys: Client<typeof KeyService>;
  schedules: Client<typeof ScheduleService>;
}

/** A transport to the server; `interceptors` run after the API key is set (the CLI explains refusals with them). */
export function createTransport(options: ClientOptions, interceptors: Interceptor[] = []): Transport {
  let url: URL | undefined;
  try {
    url = new URL(options.baseUrl);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== "http:" && url?.protocol !== "https:") {
    throw new InvalidArgumentError(`baseUrl: expected http://HOST:PORT or https://HOST:PORT, got "${options.baseUrl}"`);
  }
  const ca = options.caCert;
  return createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "1.1",
    acceptCompression: acceptsCompression(url) ? undefined : [],
    nodeOptions: ca !== undefined && ca.length > 0 ? { ca } : undefined,
    interceptors: [sendToken(options.token), ...interceptors],
  });
}

export function createApiClients(transport: Transport): ApiClients {
  return {
    jobs: createConnectClient(JobService, transport),
    keys: createConnectClient(KeyService, transport),
    schedules: createConnectClient(ScheduleService, transport),
  };
}

/** Whether to ask this server for compressed responses (connect-node's gzip and brotli): not over loopback. */
export function acceptsCompression(url: URL): boolean {
  return !isLoopbackHost(url.hostname);
}

function sendToken(token: string | undefined): Interceptor {
  return (next) => (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}
