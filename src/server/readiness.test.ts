import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startPostgres, skipWithoutPostgres, type TestPostgres } from "../../test/fixtures/postgres.js";
import { ManualClock } from "../core/clock.js";
import { openDatabase } from "../store/database.js";
import { Store } from "../store/store.js";
import { DatabaseReadiness } from "./readiness.js";

describe("readiness", () => {
  it("pings once per second however many probes come, sharing the one in flight", async () => {
    const clock = new ManualClock();
    let pings = 0;
    const readiness = new DatabaseReadiness(async () => void pings++, clock);
    const answers = await Promise.all(Array.from({ length: 20 }, () => readiness.check()));
    assert.ok(answers.every((a) => a.isReady));
    await readiness.check();
    assert.equal(pings, 1);
    clock.advance(1000);
    await readiness.check();
    assert.equal(pings, 2);
  });

  it("is unready, with the reason, when the database does not answer in time", async () => {
    const readiness = new DatabaseReadiness(() => new Promise(() => {}), new ManualClock(), { timeoutMs: 50 });
    assert.deepEqual(await readiness.check(), { isReady: false, reason: "no answer within 50 ms" });
  });

  it("tells onChange when the answer changes, and only then", async () => {
    const clock = new ManualClock();
    let fail: string | null = null;
    const seen: string[] = [];
    const readiness = new DatabaseReadiness(async () => {
      if (fail) throw new Error(fail);
    }, clock, { onChange: (a) => void seen.push(a.isReady ? "ready" : a.reason) });
    for (const next of [null, null, "connect ECONNREFUSED 10.0.0.5:5432", "connect ECONNREFUSED 10.0.0.5:5432", "password authentication failed", null, null]) {
      fail = next;
      await readiness.check();
      clock.advance(1000);
    }
    assert.deepEqual(seen, ["connect ECONNREFUSED 10.0.0.5:5432", "password authentication failed", "ready"], "the first ready answer is no change; repeats are not told");
  });

  it("SQLite: ready while the database answers, unready once it is gone", async () => {
    const { db, kind } = await openDatabase("sqlite::memory:");
    const store = new Store(db, kind);
    const clock = new ManualClock();
    const readiness = new DatabaseReadiness(() => store.ping(), clock);
    assert.equal((await readiness.check()).isReady, true);
    await store.close();
    clock.advance(1000);
    const answer = await readiness.check();
    assert.equal(answer.isReady, false);
  });
});

const SKIP = skipWithoutPostgres("readiness on PostgreSQL");
describe("readiness on PostgreSQL", { skip: SKIP }, () => {
  let postgres: TestPostgres;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres.close();
    assert.deepEqual(postgres.leftoverProcesses(), []);
  });

  it("goes unready when the database refuses connections and ready again when it is back", async () => {
    const url = await postgres.createDatabase("hodei_ready");
    const name = new URL(url).pathname.slice(1);
    const { db, kind, notifier } = await openDatabase(url, { pool: { size: 2, connectTimeoutMs: 1000, statementTimeoutMs: 1000 } });
    const store = new Store(db, kind, notifier);
    const clock = new ManualClock();
    const readiness = new DatabaseReadiness(() => store.ping(), clock);
    try {
      assert.equal((await readiness.check()).isReady, true);
      await postgres.query(`alter database "${name}" allow_connections false`);
      await postgres.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [name]);
      clock.advance(1000);
      const down = await readiness.check();
      assert.equal(down.isReady, false);
      assert.ok(!down.isReady && down.reason.length > 0);
      await postgres.query(`alter database "${name}" allow_connections true`);
      clock.advance(1000);
      assert.equal((await readiness.check()).isReady, true);
    } finally {
      await postgres.query(`alter database "${name}" allow_connections true`);
      await store.close();
    }
  });
});
