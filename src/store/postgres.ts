/**
 * PostgreSQL behind the same Kysely queries as SQLite: a pg.Pool with Kysely's PostgresDialect.
 *
 * Invariants:
 *  - int8 (bigint: every epoch-ms column, count(*)) is read as a JavaScript number, exactly: a value
 *    beyond Number.MAX_SAFE_INTEGER raises instead of losing precision. bytea is a Buffer (pg's
 *    default). The parsers belong to this pool only (no global pg.types change);
 *  - a database that hangs never hangs the control plane: connecting, every statement and every
 *    idle transaction have a time limit, and the client gives up on an answer that does not come;
 *  - migrations run under one advisory lock (held by a dedicated connection), so replicas that
 *    start at once on one database apply each step once, one after another;
 *  - the password never appears in a log line or an error (redactDatabaseUrl).
 */
import pg from "pg";
import { parse as parseConnectionString } from "pg-connection-string";
import { Kysely, type LogConfig, PostgresDialect } from "kysely";
import { InvalidInputError, StartupError } from "../core/errors.js";
import type { Database } from "./schema.js";
import { type PostgresPoolOptions, redactDatabaseUrl } from "./database-url.js";

/** pg's type oid of int8 (bigint). */
const INT8_OID = 20;
/** Any number that identifies Hodei's migrations among other users of the advisory lock space. */
export const MIGRATION_LOCK_KEY = 0x686f6465; // "hode"
/** Extra time the client waits for an answer past the server's own statement_timeout, ms. */
const CLIENT_ANSWER_MARGIN_MS = 1000;

/** int8 as a number; a value a number cannot hold exactly is an error, never a silent rounding. */
export function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${text} is beyond Number.MAX_SAFE_INTEGER: Hodei cannot read it without losing precision`);
  return n;
}

const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8_OID && format !== "binary") return parseInt8;
    return pg.types.getTypeParser(oid, format as "text");
  },
} as pg.CustomTypesConfig;

/** The pg configuration of the URL with Hodei's limits. Throws an InvalidInputError for a URL that cannot be read. */
export function poolConfig(url: string, options: PostgresPoolOptions): pg.PoolConfig {
  try {
    // Checked here to fail early with a clear message; parsed for pg below.
    const parsed = new URL(url);
    if (!parsed.hostname && !parsed.searchParams.get("host")) throw new Error("no host");
    if (parsed.pathname === "/" || parsed.pathname === "") throw new Error("no database name");
  } catch (err) {
    throw new InvalidInputError(
      `HODEI_DATABASE_URL ${redactDatabaseUrl(url)} is not a PostgreSQL URL Hodei can use (${(err as Error).message}): write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=PATH]`,
    );
  }
  // Parsed once, TLS files (sslrootcert, sslcert, sslkey) read now: given the URL itself, pg would
  // parse it and read them again for every new connection, and a file missing at that moment would
  // throw where pg-pool opens a connection, ending the process. As pg does, the URL's own parameters
  // win over the defaults below.
  let fromUrl: ReturnType<typeof parseConnectionString>;
  try {
    fromUrl = parseConnectionString(url);
  } catch (err) {
    throw new InvalidInputError(`HODEI_DATABASE_URL ${redactDatabaseUrl(url)}: ${(err as Error).message.replaceAll(url, redactDatabaseUrl(url))}`);
  }
  const limit = options.statementTimeoutMs;
  const defaults = {
    max: options.size,
    connectionTimeoutMillis: options.connectTimeoutMs,
    // 0: no limit (the migration connection only).
    ...(limit > 0 && { statement_timeout: limit, idle_in_transaction_session_timeout: limit, query_timeout: limit + CLIENT_ANSWER_MARGIN_MS }),
    keepAlive: true,
    application_name: "hodei",
    types,
  };
  return { ...defaults, ...(fromUrl as pg.PoolConfig) };
}

/**
 * What a failure to reach the database means, in words that say what to fix. The message names
 * the URL without its password.
 */
export function explainConnectError(err: unknown, url: string): StartupError {
  const e = err as { code?: string; message?: string };
  const where = redactDatabaseUrl(url);
  const message = e?.message ?? String(err);
  let hint: string;
  switch (e?.code) {
    case "28P01":
    case "28000":
      hint = "authentication failed: check the user and password in HODEI_DATABASE_URL (and pg_hba.conf on the server)";
      break;
    case "3D000":
      hint = "the database does not exist: create it (createdb, or CREATE DATABASE) or fix its name in HODEI_DATABASE_URL";
      break;
    case "ECONNREFUSED":
      hint = "nothing listens there: is PostgreSQL running, and are the host and port in HODEI_DATABASE_URL right?";
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      hint = "the host name does not resolve: fix the host in HODEI_DATABASE_URL";
      break;
    case "53300":
      hint = "the server has no connection slot left: raise max_connections or lower HODEI_DB_POOL_SIZE on each replica";
      break;
    default:
      hint = /timeout/i.test(message)
        ? "no answer in time (HODEI_DB_CONNECT_TIMEOUT_MS): is the host reachable from here?"
        : /ssl|tls|certificate/i.test(message)
          ? "TLS failed: check sslmode and sslrootcert in HODEI_DATABASE_URL"
          : "see the cause";
  }
  return new StartupError(`cannot use the database ${where}: ${hint} (${message.replaceAll(url, where)})`, { cause: err });
}

export interface PostgresHandle {
  db: Kysely<Database>;
  pool: pg.Pool;
}

export function createPostgresDatabase(url: string, options: PostgresPoolOptions, log?: LogConfig): PostgresHandle {
  const pool = new pg.Pool(poolConfig(url, options));
  // An idle connection the server ended (a restart, pg_terminate_backend) is an event, not a crash:
  // the pool drops it and opens another when needed.
  pool.on("error", () => {});
  // A connection in use (a statement running, or a transaction between two statements) that the
  // server ends emits 'error' on its client, where the pool listens only while it is idle: without a
  // listener of its own that event would end the process. The statement in flight, or the next one,
  // fails with that error, which its caller handles; the pool drops the broken connection when it is
  // released.
  pool.on("connect", (client) => client.on("error", () => {}));
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log }), pool };
}

/**
 * Runs `fn` while holding the migration advisory lock on a connection of its own (no statement
 * timeout: waiting for another replica's migrations is expected). Connecting is where a wrong URL,
 * a missing database or a bad password shows first: those failures are explained.
 */
export async function withMigrationLock<T>(url: string, options: PostgresPoolOptions, fn: () => Promise<T>): Promise<T> {
  const { statement_timeout: _s, query_timeout: _q, idle_in_transaction_session_timeout: _i, max: _m, ...config } = poolConfig(url, options);
  const client = new pg.Client(config);
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw explainConnectError(err, url);
  }
  try {
    await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      return await fn();
    } finally {
      await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    }
  } finally {
    // Ending the session releases the lock even when the unlock above failed.
    await client.end().catch(() => {});
  }
}
