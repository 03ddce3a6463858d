/**
 * The client's errors: every failure of a call is a HodeiError whose `code` is the Connect code of
 * the answer ("not_found", "permission_denied", ... as the Connect protocol spells them), with a
 * subclass for the codes a caller usually branches on. `message` is the server's own words; `cause`
 * keeps the underlying ConnectError (and through it the Node error of a failed connection: the
 * TLS or socket error code is there).
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** The Connect codes, as the Connect protocol writes them. */
export type ErrorCode =
  | "canceled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data_loss"
  | "unauthenticated";

const CODE_NAMES: Record<Code, ErrorCode> = {
  [Code.Canceled]: "canceled",
  [Code.Unknown]: "unknown",
  [Code.InvalidArgument]: "invalid_argument",
  [Code.DeadlineExceeded]: "deadline_exceeded",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "already_exists",
  [Code.PermissionDenied]: "permission_denied",
  [Code.ResourceExhausted]: "resource_exhausted",
  [Code.FailedPrecondition]: "failed_precondition",
  [Code.Aborted]: "aborted",
  [Code.OutOfRange]: "out_of_range",
  [Code.Unimplemented]: "unimplemented",
  [Code.Internal]: "internal",
  [Code.Unavailable]: "unavailable",
  [Code.DataLoss]: "data_loss",
  [Code.Unauthenticated]: "unauthenticated",
};

export class HodeiError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HodeiError";
  }
}

/** No such job (or it was removed by retention: the message says when). */
export class NotFoundError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "not_found", options);
    this.name = "NotFoundError";
  }
}

/** The request was refused as given: the message names the field and what to fix. */
export class InvalidArgumentError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "invalid_argument", options);
    this.name = "InvalidArgumentError";
  }
}

/** No API key, or one the server does not accept (unknown, revoked). */
export class UnauthenticatedError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "unauthenticated", options);
    this.name = "UnauthenticatedError";
  }
}

/** The API key lacks the scope (or the job is another key's). */
export class PermissionDeniedError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "permission_denied", options);
    this.name = "PermissionDeniedError";
  }
}

/** An idempotency key already used with another spec. */
export class AlreadyExistsError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "already_exists", options);
    this.name = "AlreadyExistsError";
  }
}

/** The job is not in a state that allows it (cancel an ended job, rerun a running one). */
export class FailedPreconditionError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "failed_precondition", options);
    this.name = "FailedPreconditionError";
  }
}

/** The server could not be reached, or the connection broke (after the client's own retries). */
export class UnavailableError extends HodeiError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, "unavailable", options);
    this.name = "UnavailableError";
  }
}

/** wait() gave up: the job had not ended within timeoutMs (it goes on running on the server). */
export class WaitTimeoutError extends HodeiError {
  constructor(
    readonly jobId: string,
    readonly timeoutMs: number,
    options?: ErrorOptions,
  ) {
    super(`job ${jobId} did not end within ${timeoutMs} ms`, "deadline_exceeded", options);
    this.name = "WaitTimeoutError";
  }
}

const SUBCLASSES: Partial<Record<Code, new (message: string, options?: ErrorOptions) => HodeiError>> = {
  [Code.NotFound]: NotFoundError,
  [Code.InvalidArgument]: InvalidArgumentError,
  [Code.Unauthenticated]: UnauthenticatedError,
  [Code.PermissionDenied]: PermissionDeniedError,
  [Code.AlreadyExists]: AlreadyExistsError,
  [Code.FailedPrecondition]: FailedPreconditionError,
  [Code.Unavailable]: UnavailableError,
};

/** Any thrown value as a HodeiError (a HodeiError as it is); the original is the cause. */
export function toHodeiError(err: unknown): HodeiError {
  if (err instanceof HodeiError) return err;
  const connectError = ConnectError.from(err);
  const message = connectError.rawMessage || CODE_NAMES[connectError.code];
  const Subclass = SUBCLASSES[connectError.code];
  if (Subclass) return new Subclass(message, { cause: connectError });
  return new HodeiError(message, CODE_NAMES[connectError.code] ?? "unknown", { cause: connectError });
}

/** The call's result, or its failure as a HodeiError (toHodeiError). */
export async function mapErrors<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw toHodeiError(err);
  }
}
