/**
 * The leader lease between replicas on one database, with a manual clock and direct calls: no
 * sleeping. Each replica has its own liveness (its own process), beaten as its timer would.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { openDatabase } from "../store/database.js";
import { Store } from "../store/store.js";
import { Leadership } from "./leadership.js";
import { BEAT_INTERVAL_MS, Liveness } from "./liveness.js";

const LEASE_MS = 15_000;

describe("leader lease", () => {
  let clock: ManualClock;
  let store: Store;
  let replicas: { lease: Leadership; liveness: Liveness; isFrozen: boolean }[];

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    replicas = [];
  });
  afterEach(async () => {
    await store.close();
  });

  /** Process keys of this "machine" whose process is gone (what process-key.ts would find in /proc). */
  const goneProcesses = new Set<string>();

  function replica(id: string, nodeId = "node-a", processKey: string | null = null) {
    const log = pino({ level: "silent" });
    const liveness = new Liveness(clock, log);
    const lease = new Leadership({ replicaId: id, nodeId, processKey }, { store, clock, liveness, log, leaseMs: LEASE_MS, isProcessGone: (key) => goneProcesses.has(key) });
    const r = { lease, liveness, isFrozen: false };
    replicas.push(r);
    return r;
  }

  /** Time passing; every replica that is not frozen beats its liveness timer. */
  function tick(ms: number): void {
    for (let left = ms; left > 0; left -= BEAT_INTERVAL_MS) {
      clock.advance(Math.min(BEAT_INTERVAL_MS, left));
      for (const r of replicas) if (!r.isFrozen) r.liveness.beat();
    }
  }

  it("is taken over by another replica once the holder stops renewing, within a third of a lease of its expiry", async () => {
    const a = replica("a");
    const b = replica("b");
    assert.equal(await a.lease.ensure(), true);
    assert.equal(await b.lease.ensure(), false);
    tick(LEASE_MS - 1000); // a stops renewing (it died); b keeps trying every third of a lease
    assert.equal(await b.lease.renew(), false, "not before the holder's expiry");
    assert.equal(a.lease.isLeader(), true, "the holder still leads until the expiry it wrote");
    tick(1000);
    assert.equal(a.lease.isLeader(), false, "at its expiry the holder stops counting itself leader");
    let tookOverAfterMs = 0;
    while (!(await b.lease.ensure())) {
      tick(LEASE_MS / 3);
      tookOverAfterMs += LEASE_MS / 3;
    }
    assert.ok(tookOverAfterMs <= LEASE_MS / 3, `taken over ${tookOverAfterMs} ms after the expiry`);
    assert.equal((await store.replicas.getLease("leader"))?.holder, "b");
  });

  it("is taken over at once, not at its expiry, when the holder's process on this node is known to be gone", async () => {
    goneProcesses.clear();
    const a = replica("a", "node-a", "boot/ns/101/500");
    assert.equal(await a.lease.ensure(), true);
    const epoch = (await store.replicas.getLease("leader"))!.epoch;
    // a is SIGKILLed; b is the server started again on the same machine a moment later.
    a.isFrozen = true;
    const b = replica("b", "node-a", "boot/ns/202/900");
    tick(1000);
    assert.equal(await b.lease.ensure(), false, "while a's process runs (as far as anyone can tell), its lease holds");
    goneProcesses.add("boot/ns/101/500");
    assert.equal(await b.lease.ensure(), true, "its process is gone: b leads now, 14 s before the lease would expire");
    const lease = await store.replicas.getLease("leader");
    assert.equal(lease?.holder, "b");
    assert.equal(lease?.epoch, epoch + 1, "a change of hands");
  });

  it("waits for the expiry when the holder is on another node, has no process key, or only seems gone", async () => {
    goneProcesses.clear();
    goneProcesses.add("boot/ns/101/500");
    goneProcesses.add("boot/ns/303/700");
    // On another node: its process key says nothing about this machine's processes.
    const a = replica("a", "node-b", "boot/ns/101/500");
    assert.equal(await a.lease.ensure(), true);
    a.isFrozen = true;
    const b = replica("b", "node-a", "boot/ns/202/900");
    tick(1000);
    assert.equal(await b.lease.ensure(), false, "a holder on another node keeps its lease until it expires");
    tick(LEASE_MS);
    assert.equal(await b.lease.ensure(), true, "taken at the expiry, as before");
    // A holder from before process keys (null): the same.
    b.isFrozen = true;
    await store.replicas.renewPresence("b", "node-a", clock.nowMs(), null);
    const c = replica("c", "node-a", "boot/ns/303/800");
    assert.equal(await c.lease.ensure(), false, "no process key: no proof, no takeover");
  });

  it("takes over only if the lease is still the one it saw (holder and epoch), so two survivors cannot both win", async () => {
    const a = replica("a", "node-a", "boot/ns/101/500");
    await a.lease.ensure();
    const { epoch } = (await store.replicas.getLease("leader"))!;
    assert.ok(await store.replicas.takeOverLease("leader", "a", epoch, "b", clock.nowMs() + LEASE_MS));
    assert.equal(await store.replicas.takeOverLease("leader", "a", epoch, "c", clock.nowMs() + LEASE_MS), null, "the second one finds b there");
    assert.equal((await store.replicas.getLease("leader"))?.holder, "b");
  });

  it("renewed every third of a lease, stays with its holder however long others try", async () => {
    const a = replica("a");
    const b = replica("b");
    const c = replica("c");
    await a.lease.ensure();
    const epoch = (await store.replicas.getLease("leader"))!.epoch;
    for (let i = 0; i < 30; i++) {
      tick(LEASE_MS / 3);
      assert.equal(await a.lease.ensure(), true);
      assert.equal(await b.lease.ensure(), false);
      assert.equal(await c.lease.ensure(), false);
    }
    assert.equal((await store.replicas.getLease("leader"))?.epoch, epoch, "never changed hands");
  });

  it("never has two leaders at once, whatever the order of renewals, deaths and freezes", async () => {
    const all = [replica("a"), replica("b"), replica("c")];
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let changes = 0;
    let last = "";
    for (let step = 0; step < 400; step++) {
      const r = all[Math.floor(random() * all.length)];
      const action = random();
      if (action < 0.1) r.isFrozen = !r.isFrozen; // SIGSTOP / SIGCONT
      else if (!r.isFrozen) await r.lease.ensure();
      tick(Math.floor(random() * 4000));
      const leaders = all.filter((x) => !x.isFrozen && x.lease.isLeader());
      assert.ok(leaders.length <= 1, `step ${step}: ${leaders.length} leaders`);
      const holder = (await store.replicas.getLease("leader"))!.holder;
      if (holder !== last) changes++;
      last = holder;
    }
    assert.ok(changes > 3, `the lease changed hands (${changes} times), so the test exercised takeovers`);
  });

  it("a frozen leader does not act on its lease until it has renewed it in the database", async () => {
    const a = replica("a");
    const b = replica("b");
    await a.lease.ensure();
    a.isFrozen = true;
    tick(3000); // frozen well within its lease
    assert.equal(a.lease.isLeader(), false, "an absence since the last renewal: the lease may have been lost");
    a.isFrozen = false;
    assert.equal(await a.lease.ensure(), true, "renewed in the database: nobody took it");
    a.isFrozen = true;
    tick(LEASE_MS + 1000); // frozen past its lease
    assert.equal(await b.lease.ensure(), true, "b took it over");
    a.isFrozen = false;
    assert.equal(a.lease.isLeader(), false);
    assert.equal(await a.lease.ensure(), false, "the thawed replica finds it lost");
  });

  it("released on shutdown, is free at once, and the presence row goes", async () => {
    const a = replica("a", "node-a");
    const b = replica("b", "node-b");
    await a.lease.ensure();
    await b.lease.ensure();
    assert.deepEqual((await store.replicas.listPresence()).map((r) => [r.id, r.node_id]), [["a", "node-a"], ["b", "node-b"]]);
    await a.lease.release();
    assert.equal(a.lease.isLeader(), false);
    assert.equal(await b.lease.ensure(), true, "no wait for the expiry");
    assert.deepEqual((await store.replicas.listPresence()).map((r) => r.id), ["b"]);
    assert.equal(await a.lease.renew(), false, "a released replica does not take it back");
  });
});
