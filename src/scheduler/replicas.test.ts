/**
 * Several reconcilers (replicas) on one database, with a fake provider and a manual clock, driven
 * by direct calls: leader-only steps, capacity counted inside the claim, a start in flight on
 * another replica judged from its worker row, and local (node-bound) workers looked after by the
 * replicas of their node only.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { ManualClock } from "../core/clock.js";
import { newId, workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { LIVE_WORKER_STATES } from "../core/worker-state.js";
import { hashToken } from "../core/token.js";
import { createMetrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import type { JobRow } from "../store/schema.js";
import { Store } from "../store/store.js";
import { START_MARGIN_MS } from "./context.js";
import { BEAT_INTERVAL_MS } from "./liveness.js";
import { NODE_LOSS_LEASES } from "./nodes.js";
import { Reconciler } from "./reconciler.js";

const REGISTRATION_MS = 60_000;
const LEASE_MS = 15_000;
const INTERVAL_MS = 2_000;

describe("replicas on one database", () => {
  let clock: ManualClock;
  let store: Store;
  let replicas: Reconciler[];

  beforeEach(async () => {
    clock = new ManualClock();
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    replicas = [];
  });
  afterEach(async () => {
    for (const r of replicas) await r.settle();
    await store.close();
  });

  function replica(id: string, provider: FakeProvider, options: { nodeId?: string; maxWorkers?: number; metrics?: ReturnType<typeof createMetrics> } = {}): Reconciler {
    const r = new Reconciler({
      store,
      providers: new Map([[provider.name, { provider, maxWorkers: options.maxWorkers ?? 4, workerServerUrl: "http://127.0.0.1:1" }]]),
      clock,
      log: pino({ level: "silent" }),
      metrics: options.metrics ?? createMetrics(),
      registrationTimeoutMs: REGISTRATION_MS,
      heartbeatTimeoutMs: 30_000,
      reconcileIntervalMs: INTERVAL_MS,
      orphanGraceMs: 30_000,
      stopGraceMs: 1000,
      agents: { cancel: () => false },
      random: () => 0.5,
      replica: { replicaId: id, nodeId: options.nodeId ?? "node-a" },
      leaderLeaseMs: LEASE_MS,
    });
    replicas.push(r);
    return r;
  }

  function tick(ms: number, live = replicas): void {
    for (let left = ms; left > 0; left -= BEAT_INTERVAL_MS) {
      clock.advance(Math.min(BEAT_INTERVAL_MS, left));
      for (const r of live) r.liveness.beat();
    }
  }

  async function pass(r: Reconciler): Promise<void> {
    await r.runOnce();
    await r.settle();
  }

  async function submit(provider = "fake"): Promise<JobRow> {
    const spec = validateJobSpec({ command: ["true"], provider }, { provider, timeoutSeconds: 600, providers: [provider] });
    const row = await store.jobs.insert(newId(), spec, clock.nowMs());
    clock.advance(1);
    return row;
  }

  /** Claims the job of provider "fake" as replica `owner` does, its start() then in flight (on the worker's row). */
  async function claimStartedBy(owner: string) {
    const now = clock.nowMs();
    const [claimed] = await store.attempts.claimBatch({ provider: "fake", nowMs: now, limit: 1, maxWorkers: 4, nodeId: null }, (job) => {
      const id = newId();
      return {
        worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: "fake", registrationDeadlineMs: now + REGISTRATION_MS, nodeId: "node-a", startOwner: owner, startDeadlineMs: now + REGISTRATION_MS + START_MARGIN_MS },
        token: { id: newId(), tokenHash: hashToken("otp"), expiresAtMs: now + REGISTRATION_MS },
      };
    });
    return claimed;
  }

  async function liveWorkers(): Promise<number> {
    return (await store.workers.list(LIVE_WORKER_STATES, 1000)).length;
  }

  it("runs the leader's steps on one replica only: the other provisions but judges no deadline", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const leader = replica("a", provider);
    const other = replica("b", provider);
    await pass(leader);
    const j = await submit();
    await pass(other);
    assert.equal((await store.jobs.get(j.id))?.state, "provisioning", "the other replica provisions");
    // The leader's lease timer renews it meanwhile (every third of a lease).
    for (let left = REGISTRATION_MS + START_MARGIN_MS + 1000; left > 0; left -= LEASE_MS / 3) {
      tick(LEASE_MS / 3);
      assert.equal(await leader.leadership.renew(), true);
    }
    await pass(other);
    assert.equal((await store.jobs.get(j.id))?.attempts, 1);
    assert.equal((await store.workers.listOfJob(j.id))[0].state, "waiting", "the other replica does not judge the registration deadline");
    await pass(leader);
    await pass(leader);
    const [worker] = await store.workers.listOfJob(j.id);
    assert.equal(worker.state, "destroyed", "the leader failed it at its deadline and destroyed it");
    assert.match(worker.failure_reason, /did not register within 60s/);
  });

  it("never lets two replicas together exceed a provider's capacity", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const a = replica("a", provider, { maxWorkers: 4 });
    const b = replica("b", provider, { maxWorkers: 4 });
    for (let i = 0; i < 10; i++) await submit();
    await Promise.all([a.runOnce(), b.runOnce()]);
    await Promise.all([a.settle(), b.settle()]);
    assert.equal(await liveWorkers(), 4);
    await pass(b);
    await pass(a);
    assert.equal(await liveWorkers(), 4, "each replica's later passes add none");
  });

  it("does not fail a worker whose start is still in flight on another replica until that start's own deadline, and then retries the job without counting the attempt", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const leader = replica("b", provider);
    await pass(leader);
    const j = await submit();
    // Replica "a" claims the job and its start() hangs (a slow pod create), or "a" dies mid-start:
    // the row says a start is in flight until its start deadline.
    const claimed = await claimStartedBy("a");
    tick(REGISTRATION_MS + 1000, [leader]);
    await pass(leader);
    let worker = await store.workers.get(claimed.worker.id);
    assert.equal(worker?.state, "provisioning", "past its registration deadline, but its start is in flight");
    assert.equal((await store.jobs.get(j.id))?.state, "provisioning");
    tick(START_MARGIN_MS, [leader]);
    await pass(leader);
    await pass(leader);
    worker = await store.workers.get(claimed.worker.id);
    assert.equal(worker?.state, "destroyed", "its start deadline passed: replica a is not trusted any more");
    const job = await store.jobs.get(j.id);
    assert.match(job!.reason, /did not register within 60s .*the control plane replica starting it \(a\) never finished the start, so the loss is not the job's/);
    // Replica a died mid-start: the control plane's loss. The job runs again, the attempt not counted.
    assert.equal(job!.state, "queued");
    assert.equal(job!.uncounted_attempts, 1);
  });

  it("retries without counting the attempt a worker that vanished before registering while another replica's start of it never finished (that replica died mid-start)", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const leader = replica("b", provider);
    await pass(leader);
    const j = await submit();
    // Replica "a" claimed the job, created the worker (its id recorded) and died before its start()
    // returned: the agent never got its assignment and exited, so the resource is gone.
    const claimed = await claimStartedBy("a");
    await store.attempts.recordProvisioned(claimed.worker.id, "gone-1", "container_id", clock.nowMs());
    assert.equal((await store.workers.get(claimed.worker.id))?.start_owner, "a", "the start is still on the row");
    tick(INTERVAL_MS, [leader]);
    await pass(leader); // a full pass inspects it: gone
    await pass(leader);
    const job = await store.jobs.get(j.id);
    assert.match(job!.reason, /disappeared before registering; the control plane replica starting it \(a\) never finished the start, so the loss is not the job's/);
    assert.equal(job!.state, "queued", "retried");
    assert.equal(job!.uncounted_attempts, 1, "the attempt not counted");
  });

  it("judges its own start's worker only once that start returned", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const leader = replica("b", provider);
    await pass(leader);
    const j = await submit();
    const claimed = await claimStartedBy("b");
    await store.attempts.recordProvisioned(claimed.worker.id, "gone-2", "container_id", clock.nowMs());
    tick(INTERVAL_MS, [leader]);
    await pass(leader);
    assert.equal((await store.workers.get(claimed.worker.id))?.state, "waiting", "its start is in flight here: not judged yet");
    await store.attempts.endStart(claimed.worker.id, "b");
    tick(INTERVAL_MS, [leader]);
    await pass(leader);
    await pass(leader);
    const job = await store.jobs.get(j.id);
    assert.match(job!.reason, /disappeared before registering/);
    assert.doesNotMatch(job!.reason, /never finished the start/);
  });

  describe("local (node-bound) workers", () => {
    function nodeBound(): FakeProvider {
      return Object.assign(new FakeProvider("local", () => clock.nowMs()), { isNodeBound: true });
    }

    it("are inspected and destroyed by a replica of their node only, whoever leads", async () => {
      const onA = nodeBound();
      const onB = nodeBound(); // another machine: its own process table
      const a = replica("a", onA, { nodeId: "node-a" });
      const b = replica("b", onB, { nodeId: "node-b" });
      await pass(b); // b leads
      const j = await submit("local");
      await pass(a);
      const [worker] = await store.workers.listOfJob(j.id);
      assert.equal(worker.node_id, "node-a");
      onA.workerOf(worker.id)!.status = { state: "gone" };
      tick(INTERVAL_MS);
      await pass(b);
      assert.equal(onB.calls.filter((c) => c === "inspect").length, 0, "the leader on node-b never inspects node-a's worker");
      assert.equal((await store.workers.get(worker.id))?.state, "waiting");
      await pass(a);
      await pass(a);
      assert.ok(onA.calls.includes("inspect"));
      assert.equal((await store.workers.get(worker.id))?.state, "destroyed", "node-a's replica found it gone and destroyed it");
      assert.deepEqual(onB.stopped, []);
    });

    it("capacity counts per node: a full node does not stop another node's replica", async () => {
      const a = replica("a", nodeBound(), { nodeId: "node-a", maxWorkers: 2 });
      const b = replica("b", nodeBound(), { nodeId: "node-b", maxWorkers: 2 });
      for (let i = 0; i < 6; i++) await submit("local");
      await pass(a);
      await pass(a);
      await pass(b);
      const workers = await store.workers.list(LIVE_WORKER_STATES, 100);
      assert.deepEqual(workers.map((w) => w.node_id).sort(), ["node-a", "node-a", "node-b", "node-b"]);
    });

    it("of a node with no running replica for two leases, lose their attempts as a disruption (not counted)", async () => {
      const a = replica("a", nodeBound(), { nodeId: "node-a" });
      const b = replica("b", nodeBound(), { nodeId: "node-b" });
      await pass(b);
      const j = await submit("local");
      await pass(a);
      const [worker] = await store.workers.listOfJob(j.id);
      await store.attempts.endStart(worker.id, "a");
      // node-a's only replica dies; b goes on.
      tick(NODE_LOSS_LEASES * LEASE_MS - INTERVAL_MS, [b]);
      await pass(b);
      assert.equal((await store.workers.get(worker.id))?.state, "waiting", "not before two leases without a replica on node-a");
      tick(2 * INTERVAL_MS, [b]);
      await pass(b);
      const lost = await store.workers.get(worker.id);
      assert.equal(lost?.state, "destroying", "its attempt is lost; only a replica of node-a can stop it");
      const job = await store.jobs.get(j.id);
      assert.equal(job?.uncounted_attempts, 1, "a disruption");
      assert.match(lost!.failure_reason, /no control plane on node node-a/);
    });
  });

  it("exports the live-worker gauge and hodei_leader = 1 on the leader only", async () => {
    const provider = new FakeProvider("fake", () => clock.nowMs());
    const metricsA = createMetrics();
    const metricsB = createMetrics();
    const a = replica("a", provider, { metrics: metricsA });
    const b = replica("b", provider, { metrics: metricsB });
    await submit();
    await pass(a);
    await pass(b);
    const text = async (m: ReturnType<typeof createMetrics>) => m.registry.metrics();
    assert.match(await text(metricsA), /hodei_live_workers\{provider="fake"\} 1/);
    assert.match(await text(metricsA), /hodei_leader 1/);
    assert.doesNotMatch(await text(metricsB), /hodei_live_workers\{/);
    assert.match(await text(metricsB), /hodei_leader 0/);
  });
});
