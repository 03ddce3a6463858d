/**
 * What every server needs to know of a PostgreSQL URL and pool without loading the driver: `pg`
 * takes 40 to 90 ms to load, and a server on SQLite never needs it (store/postgres.ts loads it, and
 * store/database.ts loads that only for a postgres:// URL).
 */

export interface PostgresPoolOptions {
  /** Connections in the pool. Default 10. */
  size: number;
  /** Opening a connection, ms. Default 5000. */
  connectTimeoutMs: number;
  /** One statement, and one idle transaction, ms. Default 30000. */
  statementTimeoutMs: number;
}

export const DEFAULT_POOL_OPTIONS: PostgresPoolOptions = { size: 10, connectTimeoutMs: 5000, statementTimeoutMs: 30_000 };

export function isPostgresUrl(url: string): boolean {
  return url.startsWith("postgres://") || url.startsWith("postgresql://");
}

/** The URL with its password (in the user part or a password= parameter) replaced by ***. */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, "$1:***@").replace(/([?&]password=)[^&]*/i, "$1***");
}
