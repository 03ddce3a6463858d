/**
 * The WAL checkpoint thread: it copies the server connection's WAL into the database file from a
 * connection of its own, on the clock's schedule (a manual clock here, and the step called
 * directly), reports a thread that fails, and leaves no thread behind once stopped.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import SqliteDatabase from "better-sqlite3";
import { sql } from "kysely";
import { ManualClock } from "../core/clock.js";
import { openDatabase } from "./database.js";
import { SqliteCheckpointer } from "./sqlite-checkpointer.js";

describe("SqliteCheckpointer", () => {
  let dir: string;
  let file: string;
  let db: SqliteDatabase.Database;
  const stopped: SqliteCheckpointer[] = [];
  const started = (checkpointer: SqliteCheckpointer) => {
    stopped.push(checkpointer);
    return checkpointer;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hodei-checkpoint-"));
    file = join(dir, "hodei.db");
    db = new SqliteDatabase(file);
    db.pragma("journal_mode = WAL");
    db.pragma("wal_autocheckpoint = 0"); // only the thread checkpoints here
    db.exec("create table t (data blob)");
  });
  afterEach(async () => {
    for (const c of stopped.splice(0)) await c.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const writeRows = (n: number) => {
    const insert = db.prepare("insert into t (data) values (?)");
    for (let i = 0; i < n; i++) insert.run(Buffer.alloc(4096, i % 256));
  };

  it("copies every frame of the WAL into the database file from its own thread, while the server's connection reads and writes on", async () => {
    const checkpointer = started(new SqliteCheckpointer(file, { clock: new ManualClock() }));
    writeRows(500);
    const before = statSync(file).size;
    const result = await checkpointer.checkpoint();
    assert.ok(result.log > 500, `the WAL held the rows' frames (${result.log})`);
    assert.equal(result.checkpointed, result.log, "all of them copied: nobody held them");
    assert.equal(result.busy, 0);
    assert.ok(statSync(file).size > before + 500 * 4096, "the rows are in the database file now");
    writeRows(1);
    assert.deepEqual(db.prepare("select count(*) as n from t").get(), { n: 501 });
  });

  it("runs on the clock's schedule, one at a time, and stops with nothing left", async () => {
    const clock = new ManualClock();
    const checkpointer = new SqliteCheckpointer(file, { clock, intervalMs: 1000 });
    assert.equal(clock.pendingTimers, 1, "the first checkpoint waits its interval");
    writeRows(200);
    const before = statSync(file).size;
    clock.advance(999);
    assert.equal(statSync(file).size, before, "not before its time");
    clock.advance(1);
    assert.equal(clock.pendingTimers, 0, "the next is scheduled only once this one has ended");
    // The thread answers in its own time: wait for the rescheduling that follows its answer.
    for (let i = 0; i < 500 && clock.pendingTimers === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(clock.pendingTimers, 1);
    assert.ok(statSync(file).size > before + 200 * 4096, "the scheduled checkpoint copied the rows");
    await checkpointer.stop();
    assert.equal(clock.pendingTimers, 0, "stopped: no timer left");
    await assert.rejects(checkpointer.checkpoint(), /stopped/);
  });

  it("reports a thread that cannot open the database, and refuses checkpoints after it", async () => {
    const warnings: string[] = [];
    const checkpointer = new SqliteCheckpointer(join(dir, "missing", "none.db"), { clock: new ManualClock(), log: { warn: (_f, message) => warnings.push(message) } });
    // The thread never keeps the process up: this test does, while it waits for the thread's end.
    const keepAlive = setInterval(() => {}, 1000);
    await checkpointer.exited;
    clearInterval(keepAlive);
    assert.deepEqual(warnings, ["the WAL checkpoint thread failed; the database's own autocheckpoint goes on"]);
    await assert.rejects(checkpointer.checkpoint(), /the WAL checkpoint thread has exited/);
    await checkpointer.stop();
  });

  it("is started by openDatabase for a file, whose own autocheckpoint then waits 4x longer, and not for a database in memory", async () => {
    const opened = await openDatabase(`sqlite:${join(dir, "server.db")}`);
    const autocheckpoint = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(opened.db);
    assert.deepEqual(autocheckpoint.rows, [{ wal_autocheckpoint: 16000 }]);
    await opened.db.destroy();
    const memory = await openDatabase("sqlite::memory:");
    const inMemory = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(memory.db);
    assert.deepEqual(inMemory.rows, [{ wal_autocheckpoint: 4000 }]);
    await memory.db.destroy();
  });
});
