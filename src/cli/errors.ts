/**
 * How the CLI fails. A CliError is an expected failure (bad input, an unknown job, an unreachable
 * server) that carries the one line to print and the exit code. describeError turns anything thrown
 * into that line, `hodei: <message>`; only an unexpected error (a bug) keeps its stack trace.
 */
import { ConnectError } from "@connectrpc/connect";
import { HodeiError, NotFoundError, toHodeiError } from "../client/errors.js";
import { describeTlsFailure } from "./tls-errors.js";

/** Exit code for a command line the CLI cannot accept (unknown option, bad value). */
export const USAGE_EXIT_CODE = 2;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "CliError";
  }
}

/** Node error codes that mean the request never reached a server. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT"]);

/** True when the cause chain shows the server could not be reached at all. */
export function isServerUnreachable(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let cause = err; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && UNREACHABLE_CODES.has(code)) return true;
  }
  return false;
}

export interface ErrorReport {
  message: string;
  exitCode: number;
  /** Only for unexpected errors: what a bug report needs. */
  stack?: string;
}

/** The line (without the `hodei: ` prefix) and exit code for any thrown value. */
export function describeError(err: unknown, serverUrl: string): ErrorReport {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  // The generated clients (doctor, verify, keys) throw ConnectErrors; the client, HodeiErrors.
  if (err instanceof HodeiError || err instanceof ConnectError) return { message: describeApiError(toHodeiError(err), serverUrl), exitCode: 1 };
  if (err instanceof Error) return { message: `unexpected error: ${err.message}`, exitCode: 1, stack: err.stack };
  return { message: `unexpected error: ${String(err)}`, exitCode: 1 };
}

function describeApiError(err: HodeiError, serverUrl: string): string {
  const detail = err.message;
  // Node's error code (a TLS or socket failure) is further down the cause chain than the client's own code.
  const tlsFailure = describeTlsFailure(err.cause, serverUrl);
  if (tlsFailure) return tlsFailure;
  if (isServerUnreachable(err)) {
    return `cannot reach the Hodei server at ${serverUrl} (is "hodei server" running? set --server or HODEI_SERVER_URL)`;
  }
  switch (err.code) {
    case "invalid_argument":
      return `invalid request: ${detail}`;
    case "not_found":
    case "failed_precondition":
    case "already_exists":
    case "permission_denied":
    case "unauthenticated":
      return detail;
    case "unimplemented":
      return `the server at ${serverUrl} does not serve the Hodei API (${detail}); check --server or HODEI_SERVER_URL`;
    case "unavailable":
    case "aborted":
    case "deadline_exceeded":
      return `lost contact with the Hodei server at ${serverUrl}: ${detail}`;
    case "internal":
    case "unknown":
      return `server error: ${detail}`;
    default:
      return `${detail} (${err.code})`;
  }
}

/**
 * For `.catch()` on a call about one job: a NotFound becomes a message naming the id, or the
 * server's own words when it knows the job was removed by retention (when and why).
 */
export function explainJobNotFound(jobId: string): (err: unknown) => never {
  return (err) => {
    const found = err instanceof ConnectError ? toHodeiError(err) : err;
    if (found instanceof NotFoundError) {
      if (found.message.includes("removed by retention")) throw new CliError(found.message, 1, { cause: err });
      throw new CliError(`job ${jobId} not found (list jobs with "hodei jobs")`, 1, { cause: err });
    }
    throw err;
  };
}

/** A commander error ("error: unknown option '-x'\n") in the CLI's voice, with an optional hint. */
export function formatUsageError(text: string, hint?: string): string {
  const line = text.replace(/^error: /, "hodei: ").trimEnd();
  return `${line}${hint ? `\nhodei: ${hint}` : ""}\n`;
}
