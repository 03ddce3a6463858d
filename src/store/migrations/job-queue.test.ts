/**
 * Migrations 0013-0014 on a database written before them: existing jobs get priority 0, no queue
 * deadline and no spec hash (a reused key still answers the first job), and their labels are copied
 * into job_labels so that ListJobs by label finds them, more than one page of jobs included.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import SqliteDatabase from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import type { Database } from "../schema.js";
import { Store } from "../store.js";
import { migrateTo, migrateToLatest } from "./index.js";

describe("migrations 0013-0014 on existing jobs", () => {
  it("leaves old jobs claimable with no deadline, and copies their labels into job_labels", async () => {
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
    await migrateTo(db, "sqlite", "0012_job_submitted_by");
    const job = { state: "queued", command: '["true"]', script: "", provider: "local", env: "{}", timeout_seconds: 60, image: "", cpu_millis: 0, memory_mb: 0 };
    const common = { max_attempts: 1, attempts: 0, uncounted_attempts: 0, reason: "", logs_truncated: 0, logs_incomplete: 0, not_before_ms: 0, updated_at: 0 };
    // More than one page of the copy (500 jobs), so that its paging is exercised.
    const rows = Array.from({ length: 1203 }, (_, i) => ({
      id: `j${String(i).padStart(5, "0")}`,
      ...job,
      ...common,
      labels: JSON.stringify(i % 2 ? { team: "infra", n: String(i) } : {}),
      created_at: i,
      idempotency_key: i === 0 ? "old-key" : null,
    }));
    for (let i = 0; i < rows.length; i += 100) await db.insertInto("jobs").values(rows.slice(i, i + 100)).execute();

    await migrateToLatest(db, "sqlite");
    const store = new Store(db as Kysely<Database>, "sqlite");
    assert.equal(await store.countRows("job_labels"), 601 * 2);
    const infra = await store.jobs.list({ labels: [["team", "infra"]], limit: 3 });
    assert.deepEqual(infra.map((j) => j.id), ["j01201", "j01199", "j01197"]);
    assert.deepEqual((await store.jobs.list({ labels: [["n", "7"]], limit: 3 })).map((j) => j.id), ["j00007"]);
    const old = (await store.jobs.get("j00000"))!;
    assert.deepEqual([old.priority, old.queue_timeout_seconds, old.run_at_ms, old.queue_deadline_ms, old.spec_hash], [0, 0, null, null, null]);
    await store.close();
  });
});
