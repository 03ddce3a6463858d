/**
 * Migration 0030 on a database written before it: idempotency keys already used move into their
 * API key's namespace, so a retry after the upgrade still finds its job, and another API key's
 * submit with the same idempotency key gets a job of its own.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import SqliteDatabase from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { validateJobSpec } from "../../core/job-spec.js";
import type { Database } from "../schema.js";
import { Store } from "../store.js";
import { migrateTo, migrateToLatest } from "./index.js";

describe("migration 0030 on existing idempotency keys", () => {
  it("keeps each used key with the API key that used it", async () => {
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
    await migrateTo(db, "sqlite", "0029_replica_process_key");
    const job = { state: "succeeded", command: '["true"]', script: "", provider: "local", env: "{}", timeout_seconds: 60, image: "", cpu_millis: 0, memory_mb: 0, labels: "{}" };
    const common = { max_attempts: 1, attempts: 1, uncounted_attempts: 0, reason: "", logs_truncated: 0, logs_incomplete: 0, not_before_ms: 0, updated_at: 0, created_at: 0 };
    await db
      .insertInto("jobs")
      .values([
        { id: "by-ci", ...job, ...common, idempotency_key: "deploy-1", submitted_by: "ci" },
        { id: "anonymous", ...job, ...common, idempotency_key: "deploy-2", submitted_by: null },
        { id: "no-key", ...job, ...common, idempotency_key: null, submitted_by: "ci" },
      ])
      .execute();

    await migrateToLatest(db, "sqlite");
    const store = new Store(db as Kysely<Database>, "sqlite");
    const keys = await db.selectFrom("jobs").select(["id", "idempotency_key"]).orderBy("id").execute();
    assert.deepEqual(keys, [
      { id: "anonymous", idempotency_key: ":deploy-2" },
      { id: "by-ci", idempotency_key: "ci:deploy-1" },
      { id: "no-key", idempotency_key: null },
    ]);
    const spec = (idempotencyKey: string) => validateJobSpec({ command: ["true"], idempotencyKey }, { provider: "local", timeoutSeconds: 60, providers: ["local"], nowMs: 0 });
    assert.equal((await store.jobs.insert("retry", spec("deploy-1"), 1, "ci")).id, "by-ci", "a retry after the upgrade finds its job");
    assert.equal((await store.jobs.insert("retry-2", spec("deploy-2"), 1, null)).id, "anonymous", "without auth too");
    assert.equal((await store.jobs.insert("theirs", spec("deploy-1"), 1, "other")).id, "theirs", "another API key gets a job of its own");
    await store.close();
  });
});
