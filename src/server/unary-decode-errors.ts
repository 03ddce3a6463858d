/**
 * Unary calls whose request could not be decoded answer InvalidArgument, as streaming calls do.
 *
 * Why this is not in the error interceptor: for unary calls connect-es reads, inflates and parses
 * the request before any interceptor runs (protocol-connect/handler-factory.js parseUnaryMessage,
 * protocol/invoke-implementation.js ensureSingle), and codes some of those failures Internal. So
 * this wrapper of a unary method's handler looks at the finished answer and, when it carries such
 * an error, rewrites its status with error-interceptor.ts's reclassifyDecodeError, in each
 * protocol's own shape: the JSON body of a Connect error, the gRPC trailer, the gRPC-Web trailer
 * frame. Successful answers pass through untouched. It also refuses a GET whose query holds
 * invalid UTF-8, which URLSearchParams would otherwise turn into U+FFFD without a word.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { reclassifyDecodeError } from "./error-interceptor.js";

/** Flag bit of a compressed envelope (the same in every protocol). */
const COMPRESSED_FLAG = 0b1;

export function withUnaryDecodeErrors(handler: UniversalHandler): UniversalHandler {
  const typeName = handler.method.input.typeName;
  const reclassify = (err: ConnectError) => reclassifyDecodeError(err, typeName);
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const queryError = req.method === "GET" && handler.allowedMethods.includes("GET") ? invalidQuery(req.url) : undefined;
    if (queryError) return connectErrorResponse(queryError);
    const res = await handler(req);
    const contentType = res.header?.get("content-type") ?? "";
    if (contentType.startsWith("application/grpc-web")) return { ...res, body: res.body && rewriteGrpcWebTrailer(res.body, reclassify) };
    if (contentType.startsWith("application/grpc")) return { ...res, body: res.body && rewriteGrpcTrailer(res.body, res.trailer, reclassify) };
    if (contentType.startsWith("application/json") && res.status !== 200) return rewriteConnectError(res, reclassify);
    return res;
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

/** Connect unary errors are one JSON body; a compressed one (over 1 KiB, never ours) is left as is. */
async function rewriteConnectError(res: UniversalServerResponse, reclassify: (err: ConnectError) => ConnectError): Promise<UniversalServerResponse> {
  if (!res.body || res.header?.has("content-encoding")) return res;
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let original: ConnectError;
  try {
    original = errorFromJsonBytes(bytes, undefined, new ConnectError("", Code.Internal));
  } catch {
    return { ...res, body: oneChunk(bytes) }; // not a Connect error body: pass it on as it was
  }
  const err = reclassify(original);
  if (err === original) return { ...res, body: oneChunk(bytes) };
  return connectErrorResponse(err, res.header);
}

function connectErrorResponse(err: ConnectError, header = new Headers({ "content-type": "application/json" })): UniversalServerResponse {
  const body = errorToJsonBytes(err, {});
  header.set("content-length", String(body.byteLength));
  return { status: codeToHttpStatus(err.code), header, body: oneChunk(body) };
}

/** gRPC sends the status in trailers, which Node writes only after the body is drained. */
async function* rewriteGrpcTrailer(body: AsyncIterable<Uint8Array>, trailer: Headers | undefined, reclassify: (err: ConnectError) => ConnectError) {
  yield* body;
  const original = trailer && findTrailerError(trailer);
  if (!trailer || !original) return;
  const err = reclassify(original);
  if (err === original) return;
  trailer.set("grpc-status", String(err.code));
  trailer.set("grpc-message", encodeURIComponent(err.rawMessage));
}

/** gRPC-Web sends the status as a last frame of the body (one envelope per chunk, as connect-es writes them). */
async function* rewriteGrpcWebTrailer(body: AsyncIterable<Uint8Array>, reclassify: (err: ConnectError) => ConnectError) {
  for await (const chunk of body) {
    const flags = chunk[0] ?? 0;
    if ((flags & trailerFlag) !== trailerFlag || (flags & COMPRESSED_FLAG) === COMPRESSED_FLAG || chunk.byteLength < 5) {
      yield chunk;
      continue;
    }
    const trailer = trailerParse(chunk.subarray(5));
    const original = findTrailerError(trailer);
    const err = original && reclassify(original);
    if (!err || err === original) {
      yield chunk;
      continue;
    }
    trailer.set("grpc-status", String(err.code));
    trailer.set("grpc-message", encodeURIComponent(err.rawMessage));
    yield encodeEnvelope(flags, trailerSerialize(trailer));
  }
}

/** A Connect GET carries its message in the query; invalid percent-encoded UTF-8 there is refused. */
function invalidQuery(url: string): ConnectError | undefined {
  const query = url.split("?", 2)[1] ?? "";
  for (const pair of query.split("&")) {
    try {
      decodeURIComponent(pair.replace(/\+/g, "%20"));
    } catch {
      const name = pair.split("=", 1)[0];
      return new ConnectError(`query parameter ${name.slice(0, 32)}: invalid percent-encoded UTF-8`, Code.InvalidArgument);
    }
  }
  return undefined;
}

async function* oneChunk(bytes: Uint8Array) {
  yield bytes;
}
