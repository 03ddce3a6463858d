/**
 * Opens the database named by a URL: `sqlite:PATH` (or `sqlite::memory:`), or `postgres://…`
 * (`postgresql://…`, store/postgres.ts). Applies migrations before returning; on PostgreSQL under
 * an advisory lock, so that replicas starting at once apply each step once.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, type LogConfig, SqliteDialect } from "kysely";
import { InvalidInputError, StartupError } from "../core/errors.js";
import { migrateTo, migrateToLatest } from "./migrations/index.js";
import { newLocalNotifier, type Notifier, type NotifierLog } from "./notifier.js";
import { SqliteCheckpointer } from "./sqlite-checkpointer.js";
import { DEFAULT_POOL_OPTIONS, isPostgresUrl, type PostgresPoolOptions } from "./database-url.js";
import type { Database } from "./schema.js";

export type DatabaseKind = "sqlite" | "postgres";

/** How long a write waits for another process's lock before it fails with SQLITE_BUSY, ms. */
export const SQLITE_BUSY_TIMEOUT_MS = 250;

export interface OpenedDatabase {
  db: Kysely<Database>;
  kind: DatabaseKind;
  /** True when this call created the database (its first migration ran now). */
  isNew: boolean;
  /** Hints between the processes of this database (store/notifier.ts); closed with the Store. */
  notifier: Notifier;
}

export interface OpenOptions {
  /** Kysely's log option: tests record every statement the store executes (the query-plan audit). */
  log?: LogConfig;
  /** Stop after this migration (tests: a database as an older release left it). Default: all. */
  migrateUpTo?: string;
  /** PostgreSQL: pool size and time limits. Default DEFAULT_POOL_OPTIONS (HODEI_DB_*). */
  pool?: PostgresPoolOptions;
  /** PostgreSQL: where the notifier's listener reports a lost connection. Default: nowhere. */
  notifierLog?: NotifierLog;
}

export function sqlitePathFromUrl(url: string): string {
  if (!url.startsWith("sqlite:")) throw new InvalidInputError(`database URL must start with sqlite: (got "${url}")`);
  const path = url.slice("sqlite:".length).replace(/^\/\//, "");
  if (path === "") throw new InvalidInputError("database URL sqlite: needs a path, e.g. sqlite:.hodei/hodei.db");
  return path;
}

export async function openDatabase(url: string, options: OpenOptions = {}): Promise<OpenedDatabase> {
  if (isPostgresUrl(url)) return openPostgres(url, options);
  const path = sqlitePathFromUrl(url);
  const sqlite = openSqliteFile(path);
  sqlite.pragma("synchronous = NORMAL");
  // A file in WAL mode is checkpointed (the WAL copied back into the database, with its fsyncs) by a
  // thread of its own, every second, off the event loop (sqlite-checkpointer.ts). This connection's
  // own autocheckpoint is the backstop should that thread fall behind or fail: at 64 MiB of WAL
  // (16,000 pages of 4 KiB), or 16 MiB without the thread (an in-memory database has no WAL).
  const isWal = sqlite.pragma("journal_mode", { simple: true }) === "wal";
  const checkpointer = isWal ? new SqliteCheckpointer(path, { log: options.notifierLog }) : null;
  sqlite.pragma(`wal_autocheckpoint = ${checkpointer ? 4 * SQLITE_WAL_CHECKPOINT_PAGES : SQLITE_WAL_CHECKPOINT_PAGES}`);
  sqlite.pragma("foreign_keys = ON");
  const connection = withStatementCache(sqlite, () => void checkpointer?.stop().catch(() => {}));
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: connection }), log: options.log });
  try {
    const { isNew } = options.migrateUpTo ? await migrateTo(db, "sqlite", options.migrateUpTo) : await migrateToLatest(db, "sqlite");
    return { db, kind: "sqlite", isNew, notifier: newLocalNotifier() };
  } catch (err) {
    await db.destroy();
    throw err;
  }
}

/**
 * Opens the SQLite file (made, with its directory, if missing) in WAL mode: a path that cannot be a
 * database (a directory, a file of something else, no write permission) is a StartupError naming it.
 */
function openSqliteFile(path: string): SqliteDatabase.Database {
  let sqlite: SqliteDatabase.Database | undefined;
  try {
    // Made for this user only, as the data directory is: the database holds commands, env values and logs.
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    sqlite = new SqliteDatabase(path);
    sqlite.pragma("journal_mode = WAL");
    return sqlite;
  } catch (err) {
    sqlite?.close();
    const e = err as NodeJS.ErrnoException;
    const hint =
      e.code === "SQLITE_NOTADB"
        ? "the file is not a SQLite database"
        : e.code === "EACCES" || e.code === "SQLITE_READONLY" || e.code === "SQLITE_CANTOPEN"
          ? "it cannot be opened for writing here (a directory, or no permission)"
          : "see the cause";
    throw new StartupError(`cannot use the database sqlite:${path}: ${hint}: fix HODEI_DATABASE_URL or HODEI_DATA_DIR (${e.message})`, { cause: err });
  }
}

async function openPostgres(url: string, options: OpenOptions): Promise<OpenedDatabase> {
  // Loaded here only: a server on SQLite never loads the driver (store/database-url.ts).
  const [{ createPostgresDatabase, withMigrationLock }, { PgNotifier }] = await Promise.all([import("./postgres.js"), import("./pg-notifier.js")]);
  const poolOptions = options.pool ?? DEFAULT_POOL_OPTIONS;
  // Migrations get a connection of their own without the statement time limit: a step that
  // rewrites a big table may take longer than any query of the running control plane should.
  const { isNew } = await withMigrationLock(url, poolOptions, async () => {
    const migrating = createPostgresDatabase(url, { ...poolOptions, size: 1, statementTimeoutMs: 0 });
    try {
      return options.migrateUpTo ? await migrateTo(migrating.db, "postgres", options.migrateUpTo) : await migrateToLatest(migrating.db, "postgres");
    } finally {
      await migrating.db.destroy();
    }
  });
  const { db, pool } = createPostgresDatabase(url, poolOptions, options.log);
  const notifier = new PgNotifier(url, poolOptions, pool);
  if (options.notifierLog) notifier.setLog(options.notifierLog);
  return { db, kind: "postgres", isNew, notifier };
}

/** WAL size, in pages, at which a commit also checkpoints without the checkpoint thread (SQLite's default: 1,000). */
const SQLITE_WAL_CHECKPOINT_PAGES = 4000;

/** Prepared statements kept per connection, by SQL text (the store has about a hundred). */
const STATEMENT_CACHE_SIZE = 500;

/**
 * What Kysely's "begin" runs on SQLite. A deferred transaction that reads and then writes fails at
 * its write with SQLITE_BUSY_SNAPSHOT when another process (a second replica on the same file)
 * wrote in between, and waiting cannot help it; an immediate one takes the write lock at its start,
 * so another process's write waits (busy_timeout) at the start of its own transaction instead.
 * Every transaction of the store writes.
 */
export const BEGIN_TRANSACTION = "begin immediate";

/**
 * The database as Kysely's SqliteDialect sees it, preparing each SQL text once: Kysely prepares
 * every query anew, which costs about as much as running a short one. Safe because the dialect
 * runs one query at a time on its one connection (a statement is never in use twice at once).
 * Past STATEMENT_CACHE_SIZE texts (lists of varying length make new ones) the oldest is dropped.
 *
 * It also keeps the event loop free while another process holds the write lock for long (a backup,
 * a sqlite3 shell): better-sqlite3 waits out busy_timeout synchronously, so every write that met
 * the lock would stop the whole server for SQLITE_BUSY_TIMEOUT_MS, and a few writes a second (log
 * chunks, heartbeats, passes) would stop it for good. After a write fails with SQLITE_BUSY the
 * connection does not wait at all (busy_timeout 0: a write fails at once while the lock is held,
 * and its caller retries as it does for any busy database); the first write that gets the lock
 * (a write statement, or the immediate begin of a transaction) brings the wait back.
 */
export function withStatementCache(sqlite: SqliteDatabase.Database, onClose: () => void = () => {}) {
  // better-sqlite3 waits for a lock synchronously, blocking the whole event loop: wait only briefly
  // and let the caller retry (a reconcile step on its next pass, an agent on its next try, an API
  // client on 503). Another process holding the write lock then slows writes down, never the server.
  sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  let isContended = false;
  const setContended = (contended: boolean) => {
    isContended = contended;
    sqlite.pragma(`busy_timeout = ${contended ? 0 : SQLITE_BUSY_TIMEOUT_MS}`);
  };
  const watched = <T>(takesWriteLock: boolean, run: () => T): T => {
    let result: T;
    try {
      result = run();
    } catch (err) {
      if (!isContended && (err as { code?: string }).code === "SQLITE_BUSY") setContended(true);
      throw err;
    }
    if (isContended && takesWriteLock) setContended(false);
    return result;
  };
  const wrap = (statement: SqliteDatabase.Statement, sql: string) => {
    // Transaction control statements are read-only to SQLite; an immediate begin still takes the lock.
    const takesWriteLock = !statement.readonly || sql === BEGIN_TRANSACTION;
    return {
      reader: statement.reader,
      all: (parameters: unknown[]) => watched(takesWriteLock, () => statement.all(parameters)),
      run: (parameters: unknown[]) => watched(takesWriteLock, () => statement.run(parameters)),
      iterate: (parameters: unknown[]) => watched(takesWriteLock, () => statement.iterate(parameters)),
    };
  };
  type Wrapped = ReturnType<typeof wrap>;
  const wrapped = new Map<string, Wrapped>();
  return {
    close: () => {
      onClose();
      sqlite.close();
    },
    /** Whether writes currently fail at once instead of waiting for the lock (see above). */
    get isContended() {
      return isContended;
    },
    prepare(sql: string): Wrapped {
      let statement = wrapped.get(sql);
      if (!statement) {
        const text = sql === "begin" ? BEGIN_TRANSACTION : sql;
        statement = wrap(sqlite.prepare(text), text);
        if (wrapped.size >= STATEMENT_CACHE_SIZE) wrapped.delete(wrapped.keys().next().value!);
        wrapped.set(sql, statement);
      }
      return statement;
    },
  };
}
