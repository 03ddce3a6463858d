/**
 * Migrations 0015-0016 on a database written before them: its jobs retry no exit code and rerun
 * nothing, and its workers have no exit code.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openDatabase } from "../database.js";
import { Store } from "../store.js";
import { migrateToLatest } from "./index.js";

describe("migrations 0015-0016 on existing data", () => {
  it("gives earlier jobs no exit codes to retry and no original, and earlier workers no exit code", async () => {
    const { db, kind } = await openDatabase("sqlite::memory:", { migrateUpTo: "0012_job_submitted_by" });
    const job = { state: "failed", command: '["false"]', script: "", provider: "local", env: "{}", timeout_seconds: 60, labels: "{}", image: "" };
    const common = { max_attempts: 1, attempts: 1, reason: "the command exited with code 1", logs_truncated: 0, logs_incomplete: 0, not_before_ms: 0, created_at: 0, updated_at: 0 };
    await db.insertInto("jobs").values({ id: "j", ...job, ...common, exit_code: 1, cpu_millis: 0, memory_mb: 0, finished_at: 5 } as never).execute();
    const worker = { job_id: "j", attempt: 1, provider: "local", provider_resource_id: "1", resource_type: "process_id", reported_hostname: "h" };
    const times = { created_at: 0, registration_deadline_ms: 9e12, failure_reason: "", destroy_attempts: 0, last_error: "", registered_at: 1, started_at: 2, finished_at: 5 };
    await db.insertInto("workers").values({ id: "w", name: "n", state: "destroyed", session_hash: "s", ...worker, ...times } as never).execute();

    await migrateToLatest(db, kind);
    const store = new Store(db, kind);
    const row = await store.jobs.get("j");
    assert.deepEqual([row?.retry_on_exit_codes, row?.rerun_of], ["", null]);
    const w = await store.workers.get("w");
    assert.equal(w?.exit_code, null);
    assert.equal(row?.exit_code, 1, "the job's own exit code is kept");
    await store.close();
  });
});
