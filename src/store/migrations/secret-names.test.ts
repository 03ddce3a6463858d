/**
 * Migration 0031 on a database written before 0018: a job that still holds secrets gets their
 * names, so that its end deletes them (AttemptQueries.finishJob skips the delete for a job whose
 * secret_names is "[]"). The same on PostgreSQL is in ../postgres.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openDatabase } from "../database.js";
import { Store } from "../store.js";
import { OLD_JOBS, OLD_SECRETS } from "../../../test/fixtures/old-secret-rows.js";
import { migrateToLatest } from "./index.js";

describe("migration 0031 on jobs that hold secrets from before 0018", () => {
  it("names their secrets, so that their end deletes them", async () => {
    const { db, kind } = await openDatabase("sqlite::memory:", { migrateUpTo: "0017_job_secrets" });
    await db.insertInto("jobs" as never).values(OLD_JOBS as never).execute();
    await db.insertInto("job_secrets" as never).values(OLD_SECRETS as never).execute();

    await migrateToLatest(db, kind);
    const store = new Store(db, kind);
    assert.equal((await store.jobs.get("with-secrets"))?.secret_names, '["API_TOKEN","DB_PASSWORD"]');
    assert.equal((await store.jobs.get("without"))?.secret_names, "[]");
    for (const id of ["with-secrets", "without"]) assert.ok(await store.attempts.cancel(id, "done", 2000, 3000));
    assert.equal(await store.countRows("job_secrets"), 0, "the secrets went with their job's end");
    await store.close();
  });
});
