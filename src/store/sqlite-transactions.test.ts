/**
 * Two processes on one SQLite file (replicas): a transaction of the store that reads and then
 * writes must not fail at its write because the other one wrote in between; and another process
 * holding the write lock for long must not hold the event loop. Two connections in one process
 * stand in for the two processes (each has its own locks on the file).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import SqliteDatabase from "better-sqlite3";
import { sql } from "kysely";
import { openDatabase, type OpenedDatabase, SQLITE_BUSY_TIMEOUT_MS, withStatementCache } from "./database.js";

describe("SQLite transactions shared by two processes", () => {
  let dir: string;
  let a: OpenedDatabase;
  let b: OpenedDatabase;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "hodei-sqlite-tx-"));
    a = await openDatabase(`sqlite:${join(dir, "hodei.db")}`);
    b = await openDatabase(`sqlite:${join(dir, "hodei.db")}`);
  });
  afterEach(async () => {
    await a.db.destroy();
    await b.db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("takes the write lock at its start: the other's write waits its turn, and the transaction that read first still commits", async () => {
    let otherWrite: unknown = "not tried";
    await a.db.transaction().execute(async (tx) => {
      await tx.selectFrom("meta").selectAll().execute();
      // The other process writes while this transaction holds what it read.
      try {
        await sql`insert into meta (key, value) values ('other', 'x')`.execute(b.db);
        otherWrite = "written";
      } catch (err) {
        otherWrite = (err as { code?: string }).code;
      }
      await sql`insert into meta (key, value) values ('mine', 'y')`.execute(tx);
    });
    // A deferred begin would have let the other write in and failed here with SQLITE_BUSY_SNAPSHOT.
    assert.equal(otherWrite, "SQLITE_BUSY", "the other process waits for the lock (and retries), it does not slip in");
    const keys = (await sql<{ key: string }>`select key from meta order by key`.execute(a.db)).rows.map((r) => r.key);
    assert.ok(keys.includes("mine"), "the transaction that read first committed");
    assert.ok(!keys.includes("other"));
  });
});

describe("SQLite writes while another process holds the write lock for long", () => {
  let dir: string;
  let file: string;
  let locker: SqliteDatabase.Database;
  let raw: SqliteDatabase.Database;
  let conn: ReturnType<typeof withStatementCache>;
  const busyTimeout = () => raw.pragma("busy_timeout", { simple: true });
  const failure = (fn: () => unknown) => {
    try {
      fn();
      return "none";
    } catch (err) {
      return (err as { code?: string }).code;
    }
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hodei-sqlite-lock-"));
    file = join(dir, "hodei.db");
    raw = new SqliteDatabase(file);
    raw.pragma("journal_mode = WAL");
    raw.exec("create table t (n integer)");
    conn = withStatementCache(raw);
    locker = new SqliteDatabase(file);
  });
  afterEach(() => {
    locker.close();
    raw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stops waiting for the lock after a write met it, reads on, and waits again once a write gets it", () => {
    assert.equal(busyTimeout(), SQLITE_BUSY_TIMEOUT_MS);
    locker.exec("begin immediate");
    const insert = conn.prepare("insert into t (n) values (?)");
    assert.equal(failure(() => insert.run([1])), "SQLITE_BUSY", "the first write waits busy_timeout, then fails");
    assert.equal(conn.isContended, true);
    assert.equal(busyTimeout(), 0, "the next writes do not wait: the event loop is not held");
    assert.equal(failure(() => insert.run([2])), "SQLITE_BUSY");
    assert.equal(failure(() => conn.prepare("begin").run([])), "SQLITE_BUSY", "a transaction's immediate begin fails at once too");
    assert.deepEqual(conn.prepare("select count(*) as n from t").all([]), [{ n: 0 }], "reads go on (WAL)");
    assert.equal(conn.isContended, true, "a read does not end it: it takes no lock");

    locker.exec("commit");
    insert.run([3]);
    assert.equal(conn.isContended, false, "the first write that got the lock ends it");
    assert.equal(busyTimeout(), SQLITE_BUSY_TIMEOUT_MS);
  });

  it("ends it with a transaction's immediate begin, which takes the lock (SQLite calls it read-only)", () => {
    locker.exec("begin immediate");
    assert.equal(failure(() => conn.prepare("insert into t (n) values (1)").run([])), "SQLITE_BUSY");
    locker.exec("commit");
    conn.prepare("begin").run([]);
    assert.equal(conn.isContended, false);
    assert.equal(busyTimeout(), SQLITE_BUSY_TIMEOUT_MS);
    raw.exec("commit");
  });
});
