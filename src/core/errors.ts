/**
 * The error vocabulary of the whole control plane. Handlers throw these; the API maps them to
 * status codes in exactly one place (server/error-interceptor.ts). Anything else is transient.
 */
import type { Clock } from "./clock.js";

/** The thing asked for does not exist. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** The request is malformed; the message says what to fix and names the field. */
export class InvalidInputError extends Error {
  override name = "InvalidInputError";
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The request is valid but the entity is in a state that does not allow it. */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/** What the request would create exists already, differently (an idempotency key reused with another spec). */
export class AlreadyExistsError extends Error {
  override name = "AlreadyExistsError";
}

/** Retrying cannot help (missing image, invalid spec): the attempt fails with no retry. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/** The caller is not who it claims to be (bad OTP token or session, missing or unknown API key). */
export class UnauthenticatedError extends Error {
  override name = "UnauthenticatedError";
}

/** The caller is known but may not do this (its API key lacks a scope); the message names what is missing. */
export class PermissionDeniedError extends Error {
  override name = "PermissionDeniedError";
}

/** Not ready yet; the caller should retry shortly. */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

/**
 * Something around the server that its operator must fix, found at start (the database cannot be
 * used, the port is taken): `hodei server` says it in one line and exits 1, without a stack trace.
 */
export class StartupError extends Error {
  override name = "StartupError";
}

/** Turns anything thrown into an Error, keeping the original as cause. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(String(thrown), { cause: thrown });
}

/**
 * Runs `call` with an AbortSignal that fires after timeoutMs on `clock`; then rejects with
 * UnavailableError. Unlike a plain race, the call itself is told to stop, so timed-out calls do
 * not pile up in flight.
 */
export async function withDeadline<T>(clock: Clock, what: string, timeoutMs: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let cancelTimer = () => {};
  const timeout = new Promise<never>((_, reject) => {
    cancelTimer = clock.setTimer(timeoutMs, () => {
      const error = new UnavailableError(`${what}: no answer within ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    });
  });
  try {
    return await Promise.race([call(controller.signal), timeout]);
  } finally {
    cancelTimer();
  }
}
