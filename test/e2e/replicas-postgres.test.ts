/**
 * The replica tests (replica-tests.ts) on PostgreSQL: a new database per cluster in the throwaway
 * cluster of test/fixtures/postgres.ts; skipped without PostgreSQL unless HODEI_REQUIRE_POSTGRES=1.
 */
import assert from "node:assert/strict";
import { after, before, describe } from "node:test";
import { skipWithoutPostgres, startPostgres, type TestPostgres } from "../fixtures/postgres.js";
import { replicaTests } from "./replica-tests.js";

describe("replicas on one PostgreSQL database", { concurrency: false, skip: skipWithoutPostgres("replicas on PostgreSQL") }, () => {
  let postgres: TestPostgres | undefined;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres?.close();
    assert.deepEqual(postgres?.leftoverProcesses() ?? [], [], "the fixture's cluster left no process");
  });
  replicaTests(() => postgres!.createDatabase("hodei_replicas"));
});
