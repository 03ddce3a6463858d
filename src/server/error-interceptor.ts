/**
 * The one place where errors become API status codes. Handlers throw the errors of core/errors.ts;
 * anything else is an internal error, logged here with its stack and answered without it.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  PermanentError,
  UnauthenticatedError,
  UnavailableError,
} from "../core/errors.js";

export function toConnectError(err: unknown, log: Logger, procedure: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidInputError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof NotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof ConflictError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof UnauthenticatedError) return new ConnectError(err.message, Code.Unauthenticated);
  if (err instanceof UnavailableError) return new ConnectError(err.message, Code.Unavailable);
  if (err instanceof PermanentError) return new ConnectError(err.message, Code.FailedPrecondition);
  log.error({ err, procedure }, "request failed");
  return new ConnectError("internal error; see the server log", Code.Internal);
}

export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const procedure = req.method.name;
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
            throw toConnectError(err, log, procedure);
          }
        })(),
      };
    } catch (err) {
      throw toConnectError(err, log, procedure);
    }
  };
}
