/**
 * The cluster id is the database's: stored on first start, read back on every later one whatever
 * the URL looks like (a rotated password), derived as before on a database an older release made,
 * and overridden (and stored) by HODEI_CLUSTER_ID.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { legacyClusterId, resolveClusterId } from "./cluster-id.js";
import { openDatabase } from "./database.js";
import { Store } from "./store.js";

describe("cluster id", () => {
  let dir: string;
  let url: string;
  const open = async (options: { migrateUpTo?: string } = {}) => {
    const opened = await openDatabase(url, options);
    return { store: new Store(opened.db, opened.kind), isNew: opened.isNew };
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hodei-cluster-id-"));
    url = `sqlite:${join(dir, "hodei.db")}`;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("is made on a new database, stored, and read back on the next start even if the URL changed", async () => {
    const first = await open();
    assert.equal(first.isNew, true);
    const made = await resolveClusterId(first.store.meta, { override: undefined, databaseUrl: "postgres://hodei:old-secret@db/hodei", isNewDatabase: first.isNew });
    assert.equal(made.source, "new");
    assert.match(made.id, /^c[0-9a-f]{12}$/);
    await first.store.close();

    const second = await open();
    assert.equal(second.isNew, false);
    const again = await resolveClusterId(second.store.meta, { override: undefined, databaseUrl: "postgres://hodei:new-secret@db/hodei", isNewDatabase: second.isNew });
    assert.deepEqual(again, { id: made.id, source: "stored" }, "a rotated password keeps the id");
    await second.store.close();
  });

  it("on a database an older release made, keeps the id that release derived from the URL", async () => {
    const old = await open({ migrateUpTo: "0003_workers_by_resource" });
    await old.store.close();
    const upgraded = await open();
    assert.equal(upgraded.isNew, false);
    const decided = await resolveClusterId(upgraded.store.meta, { override: undefined, databaseUrl: url, isNewDatabase: upgraded.isNew });
    // What src/config.ts computed before the id moved into the database.
    const before = `c${createHash("sha256").update(url).digest("hex").slice(0, 12)}`;
    assert.deepEqual(decided, { id: before, source: "legacy" });
    assert.equal(legacyClusterId(url), before);
    assert.equal(await upgraded.store.meta.get("cluster_id"), before, "and stores it");
    await upgraded.store.close();
  });

  it("stores HODEI_CLUSTER_ID on first start, so that it stays the id without the variable", async () => {
    const { store, isNew } = await open();
    assert.deepEqual(await resolveClusterId(store.meta, { override: "prod-1", databaseUrl: url, isNewDatabase: isNew }), { id: "prod-1", source: "override" });
    assert.deepEqual(await resolveClusterId(store.meta, { override: undefined, databaseUrl: url, isNewDatabase: false }), { id: "prod-1", source: "stored" });
    assert.deepEqual(await resolveClusterId(store.meta, { override: "prod-1", databaseUrl: url, isNewDatabase: false }), { id: "prod-1", source: "stored" });
    await store.close();
  });

  it("lets a different HODEI_CLUSTER_ID win, reports the id it replaced and stores the new one", async () => {
    const { store, isNew } = await open();
    const made = await resolveClusterId(store.meta, { override: undefined, databaseUrl: url, isNewDatabase: isNew });
    const changed = await resolveClusterId(store.meta, { override: "staging", databaseUrl: url, isNewDatabase: false });
    assert.deepEqual(changed, { id: "staging", source: "override", replaced: made.id });
    assert.deepEqual(await resolveClusterId(store.meta, { override: undefined, databaseUrl: url, isNewDatabase: false }), { id: "staging", source: "stored" });
    await store.close();
  });

  it("gives two starts on one new database the same id (the first write wins)", async () => {
    const { store } = await open();
    const inputs = { override: undefined, databaseUrl: url, isNewDatabase: true };
    const [a, b] = await Promise.all([resolveClusterId(store.meta, inputs), resolveClusterId(store.meta, inputs)]);
    assert.equal(a.id, b.id);
    assert.equal(await store.meta.get("cluster_id"), a.id);
    await store.close();
  });
});
