/**
 * Store contract, API keys: names are unique for ever, a revoked key no longer authenticates, and
 * a use is recorded at most once per interval. Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import type { Scope } from "../core/scopes.js";
import { hashToken, mintApiKey } from "../core/token.js";
import type { Store } from "./store.js";

export function describeKeyQueries(makeStore: () => Promise<Store>): void {
  describe("api keys", () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    const add = (name: string, scopes: Scope[] = ["read"], key = mintApiKey()) => store.keys.insert({ name, keyHash: hashToken(key), scopes }, clock.nowMs());

    it("stores only the hash, and finds a working key by it", async () => {
      const key = mintApiKey();
      const row = await add("ci", ["submit", "provider:local"], key);
      assert.ok(row);
      assert.deepEqual(JSON.parse(row.scopes), ["submit", "provider:local"]);
      assert.equal(row.key_hash, hashToken(key));
      assert.ok(!JSON.stringify(row).includes(key), "the key itself is not in the row");
      assert.equal((await store.keys.findActiveByHash(hashToken(key)))?.name, "ci");
      assert.equal(await store.keys.findActiveByHash(hashToken(mintApiKey())), undefined);
    });

    it("refuses a name already taken, even by a revoked key", async () => {
      assert.ok(await add("ci"));
      assert.equal(await add("ci"), null);
      assert.ok(await store.keys.revoke("ci", clock.nowMs()));
      assert.equal(await add("ci"), null, "a revoked key keeps its name");
      assert.equal(await store.countRows("api_keys"), 1);
    });

    it("revokes a working key once; the key then no longer authenticates", async () => {
      const key = mintApiKey();
      await add("ci", ["read"], key);
      clock.advance(5000);
      const revoked = await store.keys.revoke("ci", clock.nowMs());
      assert.equal(revoked?.revoked_at, clock.nowMs());
      assert.equal(await store.keys.findActiveByHash(hashToken(key)), undefined);
      assert.equal(await store.keys.revoke("ci", clock.nowMs()), null, "already revoked");
      assert.equal(await store.keys.revoke("nobody", clock.nowMs()), null, "unknown");
      assert.equal((await store.keys.get("ci"))?.revoked_at, revoked?.revoked_at);
      assert.equal(await store.keys.get("nobody"), undefined);
    });

    it("lists oldest first, revoked keys only when asked", async () => {
      await add("b");
      clock.advance(1000);
      await add("a");
      clock.advance(1000);
      await add("c");
      await store.keys.revoke("a", clock.nowMs());
      assert.deepEqual((await store.keys.list(false)).map((k) => k.name), ["b", "c"]);
      assert.deepEqual((await store.keys.list(true)).map((k) => k.name), ["b", "a", "c"]);
    });

    it("records a use only when the one recorded is stale", async () => {
      await add("ci");
      assert.equal(await store.keys.touch("ci", clock.nowMs(), clock.nowMs() - 60_000), true, "first use");
      const first = clock.nowMs();
      clock.advance(30_000);
      assert.equal(await store.keys.touch("ci", clock.nowMs(), clock.nowMs() - 60_000), false, "used within the minute");
      assert.equal((await store.keys.get("ci"))?.last_used_at, first);
      clock.advance(30_000);
      assert.equal(await store.keys.touch("ci", clock.nowMs(), clock.nowMs() - 60_000), true, "a minute after");
      assert.equal((await store.keys.get("ci"))?.last_used_at, clock.nowMs());
    });
  });
}
