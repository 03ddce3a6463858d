/**
 * Runs the store contract on PostgreSQL (test/fixtures/postgres.ts: a throwaway cluster, or the
 * server HODEI_TEST_POSTGRES_URL names). One database, migrated once and emptied before each test
 * (TRUNCATE of every table but the migrator's: 29 s for the suite, against 66 s for a database
 * copied from a template per test, most of it dropping them). Each test's store has a pool of 8
 * connections, so the contract's concurrent claims, submits and redemptions really interleave.
 */
import { after, before } from "node:test";
import { sql } from "kysely";
import { startPostgres, skipWithoutPostgres, type TestPostgres } from "../../test/fixtures/postgres.js";
import { openDatabase } from "./database.js";
import { PgNotifier } from "./pg-notifier.js";
import { createPostgresDatabase } from "./postgres.js";
import { Store } from "./store.js";
import { describeStore } from "./store.contract.js";

const SKIP = skipWithoutPostgres("the store contract on PostgreSQL");
const POOL = { size: 8, connectTimeoutMs: 5000, statementTimeoutMs: 30_000 };

if (!SKIP) {
  let postgres: TestPostgres;
  let url: string;
  let tables: string[];
  before(async () => {
    postgres = await startPostgres();
    url = await postgres.createDatabase("hodei_contract");
    const { db } = await openDatabase(url);
    const rows = await sql<{ tablename: string }>`select tablename from pg_tables where schemaname = 'public' and tablename not like 'kysely\\_%'`.execute(db);
    tables = rows.rows.map((r) => `"${r.tablename}"`);
    await db.destroy();
  });
  after(async () => {
    await postgres.close();
  });

  describeStore("postgres", async () => {
    const { db, pool } = createPostgresDatabase(url, POOL);
    await sql.raw(`truncate ${tables.join(", ")}`).execute(db);
    return new Store(db, "postgres", new PgNotifier(url, POOL, pool));
  });
}
