/**
 * Migrations 0004-0006 on a database written before them: old text log rows read back as bytes,
 * a live worker's log numbering carries on where it was, and a worker registered before the
 * upgrade can never have its Register repeated.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import SqliteDatabase from "better-sqlite3";
import { Kysely, type Migration, Migrator, SqliteDialect } from "kysely";
import { Store } from "../store.js";
import type { Database } from "../schema.js";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_job_resources.js";
import * as m0003 from "./0003_workers_by_resource.js";
import { migrateToLatest } from "./index.js";

const BEFORE: Record<string, Migration> = {
  "0001_initial": { up: (db) => m0001.up(db, "sqlite") },
  "0002_job_resources": { up: (db) => m0002.up(db) },
  "0003_workers_by_resource": { up: (db) => m0003.up(db) },
};

describe("migrations 0004-0006 on existing data", () => {
  it("turns old log text into bytes, carries a live worker's numbering on, and closes the repeat-Register window", async () => {
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
    const { error } = await new Migrator({ db, provider: { getMigrations: async () => BEFORE } }).migrateToLatest();
    assert.equal(error, undefined);
    const job = { state: "running", command: "[]", script: "", provider: "local", env: "{}", timeout_seconds: 60, labels: "{}", image: "" };
    const common = { max_attempts: 1, attempts: 1, reason: "", logs_truncated: 0, logs_incomplete: 0, not_before_ms: 0, created_at: 0, updated_at: 0 };
    await db.insertInto("jobs").values({ id: "j", ...job, ...common }).execute();
    const worker = { job_id: "j", attempt: 1, provider: "local", provider_resource_id: "1", resource_type: "process_id", reported_hostname: "h" };
    const times = { created_at: 0, registration_deadline_ms: 9e12, failure_reason: "", destroy_attempts: 0, last_error: "", registered_at: 5, started_at: 7 };
    await db.insertInto("workers").values({ id: "w", name: "n", state: "running", session_hash: "s", ...worker, ...times }).execute();
    await db
      .insertInto("job_logs")
      .values(["é1\n", "two\n", "3\n"].map((data, i) => ({ job_id: "j", attempt: 1, seq: i + 1, stream: "stdout", data, time_ms: 0 })))
      .execute();

    await migrateToLatest(db, "sqlite");
    const store = new Store(db as Kysely<Database>, "sqlite");
    const rows = await store.logs.read("j", { attempt: 0, seq: 0 }, 10);
    assert.ok(rows.every((r) => Buffer.isBuffer(r.data)));
    assert.equal(Buffer.concat(rows.map((r) => r.data)).toString(), "é1\ntwo\n3\n");
    const w = await store.workers.get("w");
    assert.equal(w?.log_seq, 3);
    assert.equal(w?.log_bytes, Buffer.byteLength("é1\ntwo\n3\n"));
    assert.equal(w?.stream_connected_at, 7, "counted as connected: no repeated Register");
    const next = await store.logs.append("w", [{ seq: 4, stream: "stdout", data: Buffer.from("4\n"), timeMs: 0 }], null);
    assert.deepEqual(next, { kind: "stored", logSeq: 4, truncatedNow: false, isTruncated: false, storedBytes: 2, logBytes: Buffer.byteLength("é1\ntwo\n3\n4\n") }, "the agent's next chunk follows on");
    await store.close();
  });
});
