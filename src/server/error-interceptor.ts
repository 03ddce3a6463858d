/**
 * The one place where errors become API status codes. Handlers throw the errors of core/errors.ts;
 * anything else is an internal error, logged here with its stack and answered without it.
 *
 * connect-es reports some request-decoding failures as Internal although the client sent the bad
 * bytes (a body that is not protobuf, a compressed message without its encoding header, a body
 * that does not inflate). reclassifyDecodeError turns those into InvalidArgument. For streaming
 * calls this interceptor sees them; for unary calls connect-es decodes before any interceptor
 * runs, so rpc-adapter.ts applies the same function to the answer (see unary-decode-errors.ts).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  AlreadyExistsError,
  ConflictError,
  InvalidInputError,
  NotFoundError,
  PermanentError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from "../core/errors.js";
import { transientDatabaseError } from "../store/database-errors.js";

/**
 * Messages connect-es 2.1 gives decoding failures it codes Internal (protocol/serialization.js,
 * protocol/envelope.js, connect-node/compression.js), with what the client should read instead.
 * hostile-messages.test.ts pins them: a library upgrade that rewords one fails there.
 */
const DECODE_FAILURES: { pattern: RegExp; explain: (typeName: string, err: ConnectError) => string }[] = [
  {
    pattern: /^parse binary: (.*)$/s,
    explain: (typeName, err) => `cannot decode message ${typeName} from binary: ${utf8Hint(err.rawMessage.replace(/^parse binary: /, ""))}`,
  },
  {
    pattern: /^received compressed envelope, but do not know how to decompress$/,
    explain: () => "received a compressed message without its encoding: send grpc-encoding (gRPC) or connect-content-encoding (Connect) naming gzip or br",
  },
  {
    pattern: /^decompression failed$/,
    // The zlib error itself is gone by the time a unary answer is rewritten; say what it means.
    explain: (_typeName, err) => `cannot decompress the request: not valid for its content encoding${err.cause instanceof Error ? ` (${err.cause.message})` : ""}`,
  },
];

function utf8Hint(message: string): string {
  return /not valid for encoding utf-8/i.test(message) ? "a string field holds invalid UTF-8" : message;
}

/** Transient database failures (store/database-errors.ts): the caller retries. */
const TRANSIENT_MESSAGES = {
  busy: "the database is busy (another process holds its write lock); retry shortly",
  unavailable: "the database is unavailable or overloaded; retry shortly",
} as const;

/** The InvalidArgument a library decoding failure should have been, or `err` itself. */
export function reclassifyDecodeError(err: ConnectError, typeName: string): ConnectError {
  if (err.code !== Code.Internal) return err;
  const failure = DECODE_FAILURES.find((f) => f.pattern.test(err.rawMessage));
  if (!failure) return err;
  return new ConnectError(failure.explain(typeName, err), Code.InvalidArgument, err.metadata, undefined, err);
}

export function toConnectError(err: unknown, log: Logger, procedure: string, inputTypeName = ""): ConnectError {
  if (err instanceof ConnectError) return reclassifyDecodeError(err, inputTypeName);
  if (err instanceof InvalidInputError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof NotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof ConflictError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof AlreadyExistsError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof UnauthenticatedError) return new ConnectError(err.message, Code.Unauthenticated);
  if (err instanceof PermissionDeniedError) return new ConnectError(err.message, Code.PermissionDenied);
  const transient = transientDatabaseError(err);
  if (transient) {
    log.warn({ err, procedure }, transient === "busy" ? "database busy" : "database unavailable");
    return new ConnectError(TRANSIENT_MESSAGES[transient], Code.Unavailable);
  }
  if (err instanceof UnavailableError) return new ConnectError(err.message, Code.Unavailable);
  if (err instanceof PermanentError) return new ConnectError(err.message, Code.FailedPrecondition);
  log.error({ err, procedure }, "request failed");
  return new ConnectError("internal error; see the server log", Code.Internal);
}

export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const procedure = req.method.name;
    const inputTypeName = req.method.input.typeName;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            throw toConnectError(err, log, procedure, inputTypeName);
          }
        })(),
      };
    } catch (err) {
      throw toConnectError(err, log, procedure, inputTypeName);
    }
  };
}
