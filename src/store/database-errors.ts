/**
 * Which database failures are transient (retry shortly: the API answers `unavailable`), on both
 * databases. Classified here, beside the store; mapped to a status in server/error-interceptor.ts.
 *  - SQLite: another process holds the write lock (SQLITE_BUSY, SQLITE_LOCKED; store/database.ts).
 *  - PostgreSQL: the server cannot be reached or dropped the connection, has no connection slot
 *    left, is shutting down or starting, or ended the statement to resolve a conflict
 *    (serialization failure, deadlock, lock or statement timeout); and pg's own time limits.
 */

/** SQLSTATE classes and codes that mean "try again shortly". */
const TRANSIENT_SQLSTATE_CLASSES = ["08", "53", "57P", "40"]; // connection, resources, operator intervention, transaction rollback
const TRANSIENT_SQLSTATES = new Set(["55P03", "57014"]); // lock_not_available, query_canceled (statement_timeout)
const TRANSIENT_SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
/** pg's messages for its own time limits and lost connections (they carry no code). */
const TRANSIENT_PG_MESSAGES = [/^Connection terminated/, /^timeout exceeded when trying to connect$/, /^Query read timeout$/, /^Client has encountered a connection error and is not queryable$/];

export type TransientKind = "busy" | "unavailable";

/** "busy" (SQLite's lock), "unavailable" (PostgreSQL unreachable or overloaded), or null: not transient. */
export function transientDatabaseError(err: unknown): TransientKind | null {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED" || code.startsWith("SQLITE_BUSY_")) return "busy";
  if (/^[0-9A-Z]{5}$/.test(code) && (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_SQLSTATE_CLASSES.some((c) => code.startsWith(c)))) return "unavailable";
  if (TRANSIENT_SOCKET_CODES.has(code)) return "unavailable";
  if (typeof e?.message === "string" && TRANSIENT_PG_MESSAGES.some((re) => re.test(e.message as string))) return "unavailable";
  return null;
}
