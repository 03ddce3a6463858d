/**
 * Two processes on one SQLite file (replicas): a transaction of the store that reads and then
 * writes must not fail at its write because the other one wrote in between. Two connections in
 * one process stand in for the two processes (each has its own locks on the file).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { sql } from "kysely";
import { openDatabase, type OpenedDatabase } from "./database.js";

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
