/**
 * Store contract: several control planes on one database. The leader lease (one guarded statement
 * to acquire or renew; no two holders), the replicas' presence rows, the batched claim that counts
 * capacity inside itself (per provider, or per node for a node-bound provider), the start-in-flight
 * columns of a worker, and the narrow job read of the session check. Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { hashToken } from "../core/token.js";
import type { ClaimRequest } from "./attempts.js";
import type { JobRow } from "./schema.js";
import type { Store } from "./store.js";

const PROVIDERS = ["local", "docker", "kubernetes"];

export function describeReplicaQueries(makeStore: () => Promise<Store>): void {
  describe("replicas: leader lease, presence, claims within capacity", () => {
    let store: Store;
    let clock: ManualClock;
    let n: number;

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
      n = 0;
    });
    afterEach(async () => {
      await store.close();
    });

    async function submit(id: string, provider = "local", priority = 0): Promise<JobRow> {
      clock.advance(1);
      const spec = validateJobSpec({ command: ["true"], priority }, { provider, timeoutSeconds: 60, providers: PROVIDERS });
      return store.jobs.insert(id, spec, clock.nowMs());
    }

    function claim(req: Partial<ClaimRequest> = {}, node = "node-a", owner = "replica-1") {
      const now = clock.nowMs();
      return store.attempts.claimBatch({ provider: "local", nowMs: now, limit: 32, maxWorkers: 4, nodeId: null, ...req }, (job) => {
        const id = `w-${String(++n).padStart(3, "0")}`;
        return {
          worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: now + 60_000, nodeId: node, startOwner: owner, startDeadlineMs: now + 70_000 },
          token: { id: `t-${id}`, tokenHash: hashToken(`otp-${id}`), expiresAtMs: now + 60_000 },
        };
      });
    }

    describe("leader lease", () => {
      it("is held by one replica until it expires, then taken by another with the next epoch", async () => {
        const now = clock.nowMs();
        const a = await store.replicas.acquireLease("leader", "a", now, now + 15_000);
        assert.equal(a?.holder, "a");
        assert.equal(await store.replicas.acquireLease("leader", "b", now + 14_999, now + 29_999), null, "not before it expires");
        const renewed = await store.replicas.acquireLease("leader", "a", now + 5000, now + 20_000);
        assert.equal(renewed?.epoch, a!.epoch, "a renewal keeps the epoch");
        assert.equal(await store.replicas.acquireLease("leader", "b", now + 19_999, now + 35_000), null, "the renewal moved the expiry");
        const b = await store.replicas.acquireLease("leader", "b", now + 20_000, now + 35_000);
        assert.deepEqual([b?.holder, b?.epoch], ["b", a!.epoch + 1]);
        assert.equal(await store.replicas.acquireLease("leader", "a", now + 21_000, now + 36_000), null, "the old holder cannot renew a lease taken over");
        assert.equal((await store.replicas.getLease("leader"))?.holder, "b");
      });

      it("of two replicas acquiring at once, exactly one gets it", async () => {
        const now = clock.nowMs();
        const results = await Promise.all(["a", "b", "c"].map((r) => store.replicas.acquireLease("leader", r, now, now + 15_000)));
        assert.equal(results.filter(Boolean).length, 1);
      });

      it("is taken over before its expiry only from the holder and epoch seen (a holder whose process is gone), once", async () => {
        const now = clock.nowMs();
        const a = await store.replicas.acquireLease("leader", "a", now, now + 15_000);
        assert.equal(await store.replicas.takeOverLease("leader", "a", a!.epoch + 1, "b", now + 15_000), null, "another epoch: nothing");
        assert.equal(await store.replicas.takeOverLease("leader", "z", a!.epoch, "b", now + 15_000), null, "another holder: nothing");
        const b = await store.replicas.takeOverLease("leader", "a", a!.epoch, "b", now + 20_000);
        assert.deepEqual([b?.holder, b?.epoch, b?.expires_at_ms], ["b", a!.epoch + 1, now + 20_000]);
        assert.equal(await store.replicas.takeOverLease("leader", "a", a!.epoch, "c", now + 20_000), null, "a second survivor finds it taken");
        assert.equal(await store.replicas.acquireLease("leader", "a", now + 1, now + 15_001), null, "the old holder cannot renew it");
      });

      it("released, it is free at once; a release by another replica changes nothing", async () => {
        const now = clock.nowMs();
        await store.replicas.acquireLease("leader", "a", now, now + 15_000);
        await store.replicas.releaseLease("leader", "b");
        assert.equal((await store.replicas.getLease("leader"))?.holder, "a");
        await store.replicas.releaseLease("leader", "a");
        assert.equal((await store.replicas.acquireLease("leader", "b", now + 1, now + 15_001))?.holder, "b");
      });
    });

    describe("presence", () => {
      it("is inserted, renewed, listed, removed, and stale rows are removed", async () => {
        await store.replicas.renewPresence("r1", "node-a", 1000);
        await store.replicas.renewPresence("r2", "node-b", 1000);
        await store.replicas.renewPresence("r1", "node-a", 5000);
        const rows = await store.replicas.listPresence();
        assert.deepEqual(rows.map((r) => [r.id, r.node_id, r.started_at_ms, r.renewed_at_ms]), [["r1", "node-a", 1000, 5000], ["r2", "node-b", 1000, 1000]]);
        await store.replicas.renewPresence("r2", "node-b", 6000, "boot/pid:[1]/42/777");
        assert.deepEqual(await store.replicas.getPresence("r2"), { id: "r2", node_id: "node-b", started_at_ms: 1000, renewed_at_ms: 6000, process_key: "boot/pid:[1]/42/777" });
        assert.equal((await store.replicas.getPresence("r1"))?.process_key, null, "unknown where none was given");
        assert.equal(await store.replicas.getPresence("nobody"), undefined);
        assert.equal(await store.replicas.removeStalePresence(5500), 1, "r1, last renewed at 5000");
        await store.replicas.removePresence("r2");
        assert.deepEqual(await store.replicas.listPresence(), []);
      });
    });

    describe("claimBatch", () => {
      it("claims several jobs in one call, in queue order, never past the provider's capacity", async () => {
        for (let i = 0; i < 6; i++) await submit(`j${i}`, "local", i === 5 ? 10 : 0);
        const first = await claim({ maxWorkers: 4 });
        assert.deepEqual(first.map((c) => c.job.id), ["j5", "j0", "j1", "j2"], "priority first, then submit order");
        assert.ok(first.every((c) => c.job.state === "provisioning" && c.worker.job_id === c.job.id && c.worker.state === "provisioning"));
        assert.equal(await store.countRows("otp_tokens"), 4, "each claimed job has its token");
        assert.deepEqual(await claim({ maxWorkers: 4 }), [], "full: nothing more");
        await store.workers.transition(first[0].worker.id, "destroying");
        assert.deepEqual(await claim({ maxWorkers: 4 }), [], "a destroying worker still counts");
        await store.workers.transition(first[0].worker.id, "destroyed");
        assert.deepEqual((await claim({ maxWorkers: 4 })).map((c) => c.job.id), ["j3"]);
      });

      it("takes at most `limit`, and nothing of another provider or not yet due", async () => {
        for (let i = 0; i < 5; i++) await submit(`j${i}`);
        await submit("d", "docker");
        assert.equal((await claim({ maxWorkers: 100, limit: 2 })).length, 2);
        assert.deepEqual((await claim({ maxWorkers: 100, limit: 10 })).map((c) => c.job.id), ["j2", "j3", "j4"]);
        assert.deepEqual((await claim({ provider: "docker", maxWorkers: 1 })).map((c) => c.job.id), ["d"]);
        assert.deepEqual(await claim({ maxWorkers: 0 }), []);
        assert.deepEqual(await claim({ limit: 0 }), []);
      });

      it("counted per node for a node-bound provider: another node's workers do not fill this one", async () => {
        for (let i = 0; i < 6; i++) await submit(`j${i}`);
        assert.equal((await claim({ maxWorkers: 2, nodeId: "node-b" }, "node-b")).length, 2);
        assert.equal((await claim({ maxWorkers: 2, nodeId: "node-b" }, "node-b")).length, 0);
        const onA = await claim({ maxWorkers: 3, nodeId: "node-a" }, "node-a");
        assert.equal(onA.length, 3, "node-a counts its own workers only");
        assert.equal((await claim({ maxWorkers: 5, nodeId: null })).length, 0, "counted over all nodes: 5 live of 5");
      });

      it("records the worker's node and its start in flight; endStart clears it for its owner only", async () => {
        await submit("a");
        await submit("b");
        const [x, y] = await claim({}, "node-a", "replica-1");
        assert.deepEqual([x.worker.node_id, x.worker.start_owner, x.worker.start_deadline_ms], ["node-a", "replica-1", clock.nowMs() + 70_000]);
        await store.attempts.endStart(x.worker.id, "replica-2");
        assert.equal((await store.workers.get(x.worker.id))?.start_owner, "replica-1", "another replica cannot clear it");
        await store.attempts.endStart(x.worker.id, "replica-1");
        const cleared = await store.workers.get(x.worker.id);
        assert.deepEqual([cleared?.start_owner, cleared?.start_deadline_ms], [null, null]);
        const provisioned = await store.attempts.recordProvisioned(y.worker.id, "123", "process_id", clock.nowMs(), "", true);
        assert.deepEqual([provisioned?.state, provisioned?.start_owner, provisioned?.start_deadline_ms], ["waiting", null, null], "recorded after start() returned");
      });
    });

    it("jobs.getStates reads state, attempt and reason by id in one call", async () => {
      await submit("a");
      await submit("b");
      await claim({ limit: 1 });
      const states = await store.jobs.getStates(["a", "b", "a", "nope"]);
      assert.deepEqual([...states.values()].map((j) => [j.id, j.state, j.attempts]).sort(), [["a", "provisioning", 1], ["b", "queued", 0]]);
      assert.equal((await store.jobs.getStates([])).size, 0);
    });
  });
}
