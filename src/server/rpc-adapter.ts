/**
 * The Connect request handler for Node's http and http2 servers. It does what connectNodeAdapter
 * does (route by path to the services' handlers, anything else to `fallback`) plus what the network
 * edge needs, which that adapter has no hook for:
 * - a bound on every request message, as received and after decompression (readMaxBytes; zlib's
 *   maxOutputLength stops inflating there), and on every response message (writeMaxBytes);
 * - responses compressed at fast levels, whichever compression a client asks for (compression.ts);
 * - strict JSON: unknown fields and invalid UTF-8 are refused, not ignored or replaced;
 * - unary decode failures answered InvalidArgument (unary-decode-errors.ts);
 * - enveloped bodies handed over in chunks of at least 16 KiB or to the end of an envelope
 *   (envelope-chunks.ts), which keeps connect-es's envelope decoder linear in the number of chunks
 *   a client sends without copying large ones;
 * - the client's address, which handlers read from their context values (client-address.ts).
 * Binary protobuf strings are already checked as UTF-8 by @bufbuild/protobuf 2.17 (proto3 fields
 * verify UTF-8), so nothing global needs configuring for them.
 */
import type { DescService } from "@bufbuild/protobuf";
import type http from "node:http";
import type http2 from "node:http2";
import { Code, ConnectError, type ConnectRouter, createConnectRouter, type Interceptor } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import type { Logger } from "pino";
import { clientContextValues } from "./client-address.js";
import { API_COMPRESSIONS } from "./compression.js";
import { withUnaryDecodeErrors } from "./unary-decode-errors.js";
import { envelopeChunks, isEnveloped } from "./envelope-chunks.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface RpcHandlerOptions {
  /** Largest request message, bytes, compressed or not. */
  maxMessageBytes: number;
  /** Largest response message, bytes. */
  maxResponseMessageBytes: number;
  interceptors: Interceptor[];
  log: Logger;
  routes(router: ConnectRouter): void;
  /** Requests that are no RPC (health, metrics). */
  fallback(req: NodeRequest, res: NodeResponse): void;
}

export function createRpcHandler(options: RpcHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const jsonOptions = {
    // connect-es ignores unknown JSON fields by default; a misspelt field must not pass silently.
    ignoreUnknownFields: false,
    // Read by connect-es's JSON serialization (protocol/serialization.js); fatal refuses invalid UTF-8.
    textDecoder: new TextDecoder("utf-8", { fatal: true }),
  };
  const router = createConnectRouter({
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxResponseMessageBytes,
    // gzip and brotli, responses at fast levels (compression.ts): a client picks the response's.
    acceptCompression: API_COMPRESSIONS,
    jsonOptions,
    interceptors: options.interceptors,
  });
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) {
    paths.set(handler.requestPath, handler.method.methodKind === "unary" ? withUnaryDecodeErrors(handler) : handler);
  }

  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 1)[0]);
    if (!handler) {
      options.fallback(req, res);
      return;
    }
    // The client's address travels to the handlers as a context value (client-address.ts).
    let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      uReq = universalRequestFromNodeRequest(req, res, undefined, clientContextValues(req));
    } catch (err) {
      // It throws, inside Node's 'request' event, when the request's Host makes no URL: none (HTTP/1.0
      // needs none), empty, or not a host. An answer, not the end of the process.
      options.log.debug({ err, host: req.headers.host ?? null }, "request refused: no usable Host");
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "invalid_argument", message: "the request's Host header is missing or not a host: send Host: HOST[:PORT]" }));
      return;
    }
    if (isEnveloped(uReq.header.get("content-type"))) uReq.body = envelopeChunks(uReq.body as AsyncIterable<Uint8Array>, options.maxMessageBytes);
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        // Aborted: the client went away or a timeout closed the stream; nothing left to answer.
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.log.warn({ err: reason, procedure: handler.method.name }, "rpc handler failed");
      });
  };
}

/** Request paths of the bidi streaming methods of `services`: long-lived by design. */
export function bidiStreamingPaths(services: DescService[]): string[] {
  return services.flatMap((service) => service.methods.filter((m) => m.methodKind === "bidi_streaming").map((m) => `/${service.typeName}/${m.name}`));
}
