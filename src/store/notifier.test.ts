/**
 * Hints between processes (notifier.ts): in-process on SQLite; on PostgreSQL across two Stores
 * with their own pools on one database, and through a listener connection that was killed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startPostgres, skipWithoutPostgres, type TestPostgres } from "../../test/fixtures/postgres.js";
import { openDatabase } from "./database.js";
import { CoalescingPublisher, LocalNotifier, type NotifyChannel } from "./notifier.js";
import { LISTENER_APPLICATION_NAME, type PgNotifier } from "./pg-notifier.js";
import { Store } from "./store.js";

/** Resolves with the first payload on the channel that satisfies `want` (or rejects after timeoutMs). */
function next(store: Store, channel: NotifyChannel, want: (p: string) => boolean = () => true, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no ${channel} hint within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = store.notifier.subscribe(channel, (payload) => {
      if (!want(payload)) return;
      clearTimeout(timer);
      stop();
      resolve(payload);
    });
  });
}

describe("notifier: SQLite (in process)", () => {
  it("delivers a publish to the subscribers of its channel only, after the publisher's call", async () => {
    const { db, kind, notifier } = await openDatabase("sqlite::memory:");
    const store = new Store(db, kind, notifier);
    const got: string[] = [];
    store.notifier.subscribe("cancel", (p) => got.push(`cancel:${p}`));
    store.notifier.subscribe("logs", (p) => got.push(`logs:${p}`));
    const received = next(store, "cancel");
    await store.notifier.publish("cancel", "job-1");
    assert.deepEqual(got, [], "not inside the publisher's call");
    assert.equal(await received, "job-1");
    assert.deepEqual(got, ["cancel:job-1"]);
    await store.close();
  });

  it("merges a job's log hints within 50 ms into the first and one more at the end", async () => {
    const notifier = new LocalNotifier();
    const got: string[] = [];
    notifier.subscribe("logs", (p) => got.push(p));
    const publisher = new CoalescingPublisher(notifier, () => {}, 50);
    for (let i = 0; i < 10; i++) publisher.publish("logs", "job-a");
    publisher.publish("logs", "job-b");
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(got.sort(), ["job-a", "job-a", "job-b"]);
    publisher.close();
  });

  it("sends an urgent logs hint at once, inside the job's window", async () => {
    const notifier = new LocalNotifier();
    const got: string[] = [];
    notifier.subscribe("logs", (p) => got.push(p));
    const publisher = new CoalescingPublisher(notifier, () => {}, 60_000);
    publisher.publish("logs", "job-a");
    publisher.publish("logs", "job-a");
    publisher.publish("logs", "job-a", true);
    // LocalNotifier delivers on the next turn of the event loop; the window (a minute) never closed.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, ["job-a", "job-a"], "the first at once, the urgent one at once, the merged one still waits");
    publisher.close();
  });
});

const SKIP = skipWithoutPostgres("the PostgreSQL notifier tests");
describe("notifier: PostgreSQL (LISTEN/NOTIFY)", { skip: SKIP }, () => {
  let postgres: TestPostgres;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres.close();
    assert.deepEqual(postgres.leftoverProcesses(), []);
  });

  async function twoStores(url: string): Promise<[Store, Store]> {
    const a = await openDatabase(url);
    const b = await openDatabase(url);
    return [new Store(a.db, a.kind, a.notifier), new Store(b.db, b.kind, b.notifier)];
  }

  it("delivers a publish on one store's pool to a subscriber of another store on the same database", async () => {
    const url = await postgres.createDatabase("hodei_notify");
    const [a, b] = await twoStores(url);
    try {
      const received = next(b, "cancel");
      await (b.notifier as PgNotifier).listening;
      await a.notifier.publish("cancel", "job-42");
      assert.equal(await received, "job-42");
      const reconcile = next(b, "reconcile");
      a.hint("reconcile");
      assert.equal(await reconcile, a.hintOrigin, "a reconcile hint names the store that sent it (its own reconciler skips it)");
      assert.notEqual(a.hintOrigin, b.hintOrigin);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("reconnects a killed listener and fires every subscriber once, then delivers again", async () => {
    const url = await postgres.createDatabase("hodei_notify_kill");
    const [a, b] = await twoStores(url);
    const warnings: string[] = [];
    (b.notifier as PgNotifier).setLog({ warn: (_f, m) => warnings.push(m), info: (_f, m) => warnings.push(m) });
    try {
      const fired: string[] = [];
      b.notifier.subscribe("logs", (p) => fired.push(`logs:${p}`));
      b.notifier.subscribe("cancel", (p) => fired.push(`cancel:${p}`));
      await (b.notifier as PgNotifier).listening;
      const refired = next(b, "logs", (p) => p === "");
      const killed = await postgres.query(
        "select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = $1 and application_name = $2",
        [new URL(url).pathname.slice(1), LISTENER_APPLICATION_NAME],
      );
      assert.equal(killed.rowCount, 1, "the listener (store b: a has no subscriber, so listens to nothing) was found");
      assert.equal(await refired, "");
      assert.ok(fired.includes("cancel:"), "every subscriber was fired once after the reconnect");
      assert.ok(warnings.includes("database listener lost; reconnecting"));
      assert.ok(warnings.includes("database listener reconnected"));
      const after = next(b, "logs", (p) => p === "job-7");
      await a.notifier.publish("logs", "job-7");
      assert.equal(await after, "job-7");
    } finally {
      await a.close();
      await b.close();
    }
  });
});
