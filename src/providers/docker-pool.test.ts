/**
 * The Docker provider's warm pool on a real Docker daemon: idle containers exist before a job,
 * a job takes one (its id recorded before the assignment is written, renamed to the worker's name off the job's path,
 * the token nowhere in its config), each is used once, the pool refills off the job's path and
 * within capacity, idle containers give way to cold starts at capacity, list() leaves live idle
 * containers alone and reports dead ones, and close() removes the pool.
 * Skips, with a visible reason, when no daemon answers (a laptop); CI always has one.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { startWorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { DockerProvider, LABELS } from "./docker.js";
import { assembleAgentRuntime, buildWorkerImage } from "./docker-image.js";
import { eventually, workerSpec } from "./provider.contract.js";

const ROOT = resolve(import.meta.dirname, "../..");
const SKIP = skipWithoutDocker("the Docker warm pool tests");
const CLUSTER_ID = `test-pool-${randomUUID().slice(0, 8)}`;
const RUNTIME_DIR = resolve(ROOT, ".hodei", "agent-runtime");
/** An image of this test's own: the shared default image is never rebuilt here. */
const IMAGE = `hodei-worker:test-pool-${randomUUID().slice(0, 8)}`;

async function ourContainers() {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${CLUSTER_ID}`] } });
}

const isIdle = (c: { Labels: Record<string, string>; Names: string[]; State: string }) => c.Labels[LABELS.pool] === "warm" && c.Names[0].startsWith("/hodei-warm-") && c.State === "running";

function makeProvider(warmWorkers: number, maxWorkers: number) {
  const warnings: string[] = [];
  const provider = new DockerProvider({
    clusterId: CLUSTER_ID,
    socketPath: "/var/run/docker.sock",
    defaultImage: IMAGE,
    networkMode: "host",
    runtimeDir: RUNTIME_DIR,
    agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
    warmWorkers,
    maxWorkers,
    log: { warn: (_fields, message) => void warnings.push(message) },
    docker,
  });
  return { provider, warnings };
}

describe("DockerProvider warm pool", { skip: SKIP }, () => {
  before(async () => {
    const runtime = await assembleAgentRuntime({ targetDir: RUNTIME_DIR, nodePath: process.execPath, agentPath: resolve(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: IMAGE, runtimeDir: runtime.dir });
  });

  after(async () => {
    for (const c of await ourContainers()) await docker.getContainer(c.Id).remove({ force: true });
    await docker.getImage(IMAGE).remove({ force: true }).catch(() => {});
  });

  it("runs a job on a container started before it, used once; the pool refills, and close() removes it", async () => {
    const { provider } = makeProvider(2, 4);
    const protocol = await startWorkerProtocol();
    let resourceId = "";
    try {
      provider.startPool(protocol.url);
      const idle = await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 2);
      assert.equal(idle.filter(isIdle).length, 2, "two idle containers, started");
      const idleIds = new Set(idle.map((c) => c.Id));
      for (const c of idle) {
        const info = await docker.getContainer(c.Id).inspect();
        assert.equal(info.Config.Labels[LABELS.workerId], undefined, "an idle container belongs to no worker");
        assert.deepEqual([info.Config.OpenStdin, info.Config.StdinOnce], [true, true]);
      }
      assert.deepEqual(await provider.list(), [], "running idle containers are nobody's workers and no orphans");

      const p = await protocol.provision({ recordResource: false, command: ["sh", "-c", "echo ready; sleep 60"] });
      let isRunningAtRecord = false;
      let nameAtRecord = "";
      const spec = {
        ...workerSpec(),
        workerId: p.worker.id,
        name: p.worker.name,
        jobId: p.job.id,
        attempt: p.worker.attempt,
        otpToken: p.otp,
        serverUrl: protocol.url,
        onCreated: async (r: { resourceId: string; resourceType: "container_id" | "pod_name" | "process_id" }) => {
          const atRecord = await docker.getContainer(r.resourceId).inspect();
          isRunningAtRecord = atRecord.State.Running;
          nameAtRecord ||= atRecord.Name;
          await protocol.store.attempts.recordProvisioned(p.worker.id, r.resourceId, r.resourceType, protocol.clock.nowMs());
        },
      };
      const resource = await provider.start(spec);
      resourceId = resource.resourceId;
      assert.ok(idleIds.has(resourceId), "the worker is one of the idle containers");
      assert.equal(isRunningAtRecord, true, "its id is recorded (and the token bound to it) before the assignment is written");
      assert.match(nameAtRecord, /^\/hodei-warm-/, "recorded before the rename: the daemon's rename is not on the job's path");
      assert.match((await docker.getContainer(resourceId).inspect()).Name, /^\/hodei-warm-/, "not renamed yet when start() returns: the daemon's rename waits until after the job's start");
      const renamed = await eventually(async () => (await docker.getContainer(resourceId).inspect()).Name, (name) => name === `/${p.worker.name}`);
      assert.equal(renamed, `/${p.worker.name}`, "renamed to the worker's name a second later");
      const again = await provider.start(spec);
      assert.equal(again.resourceId, resourceId, "a repeated start returns the same container");
      assert.equal((await ourContainers()).filter((c) => idleIds.has(c.Id) && c.Id !== resourceId && isIdle(c)).length, 1, "and takes no other idle container");
      const output = async () => (await protocol.store.logs.read(p.job.id, { attempt: 0, seq: 0 }, 1000)).map((row) => Buffer.from(row.data).toString()).join("");
      assert.match(await eventually(output, (text) => text.includes("ready")), /^ready$/m, "the warm agent registered with its token and runs the job");

      const info = await docker.getContainer(resourceId).inspect();
      assert.equal(JSON.stringify(info).includes(p.otp), false, "docker inspect shows no token");
      assert.deepEqual(await provider.list(), [{ resourceId, resourceType: "container_id", workerId: p.worker.id, createdAtMs: (await provider.list())[0].createdAtMs }], "list() maps it back to its worker by name");

      const refilled = await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 2);
      assert.equal(refilled.filter(isIdle).length, 2, "the pool refilled");
      assert.equal(refilled.filter((c) => idleIds.has(c.Id) && c.Id !== resourceId && isIdle(c)).length, 1, "the untaken one is still idle");

      await provider.stop(resourceId, 1000);
      resourceId = "";
      assert.equal((await ourContainers()).some((c) => c.Id === resource.resourceId), false, "used once, then removed");
    } finally {
      if (resourceId) await provider.stop(resourceId, 1000);
      await provider.close();
      await protocol.close();
    }
    assert.deepEqual(await ourContainers(), [], "close() removed the pool");
  });

  it("does not rename a taken container that is gone before its rename, and logs nothing for it", async () => {
    const { provider, warnings } = makeProvider(1, 2);
    const protocol = await startWorkerProtocol();
    try {
      provider.startPool(protocol.url);
      await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 1);
      const taken = await provider.start(workerSpec({ serverUrl: protocol.url }));
      // Removed behind this provider's back (another replica's destroy), before the rename is due.
      await docker.getContainer(taken.resourceId).remove({ force: true });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.deepEqual(warnings, [], "a container already gone is nothing to rename");
    } finally {
      await provider.close();
      await protocol.close();
    }
    assert.deepEqual(await ourContainers(), []);
  });

  it("keeps to capacity: fills only spare room, gives way to a cold start, and jobs with limits start cold", async () => {
    const { provider } = makeProvider(2, 2);
    const protocol = await startWorkerProtocol();
    const started: string[] = [];
    try {
      provider.startPool(protocol.url);
      const idle = await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 2);
      const idleIds = new Set(idle.map((c) => c.Id));
      // A job with a memory limit cannot use a warm container: it starts cold, and an idle one gives way.
      const limited = await provider.start(workerSpec({ memoryMb: 256, serverUrl: protocol.url }));
      started.push(limited.resourceId);
      assert.equal(idleIds.has(limited.resourceId), false, "a job with limits starts cold");
      let containers = await ourContainers();
      assert.equal(containers.length, 2, "at capacity: one idle container was removed first");
      // The pool does not grow back past capacity.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      containers = await ourContainers();
      assert.deepEqual([containers.length, containers.filter(isIdle).length], [2, 1]);
      // The last slot: the default image takes the idle one.
      const plain = await provider.start(workerSpec({ serverUrl: protocol.url }));
      started.push(plain.resourceId);
      assert.ok(idleIds.has(plain.resourceId), "a plain job takes the idle container");
      assert.equal((await ourContainers()).length, 2);
      // Capacity freed: the pool grows back into it.
      await provider.stop(limited.resourceId, 1000);
      containers = await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 1 && cs.length === 2);
      assert.deepEqual([containers.length, containers.filter(isIdle).length], [2, 1]);
    } finally {
      for (const id of started) await provider.stop(id, 1000);
      await provider.close();
      await protocol.close();
    }
    assert.deepEqual(await ourContainers(), []);
  });

  it("list() leaves a running idle container alone and reports one that is not running as an orphan of no worker", async () => {
    const { provider } = makeProvider(0, 4);
    const make = async (name: string) =>
      docker.createContainer({
        name,
        Image: IMAGE,
        Entrypoint: ["/bin/sh", "-c", "sleep 60"],
        Labels: { [LABELS.managedBy]: "hodei", [LABELS.clusterId]: CLUSTER_ID, [LABELS.pool]: "warm" },
      });
    const running = await make(`hodei-warm-${randomUUID()}`);
    await running.start();
    const dead = await make(`hodei-warm-${randomUUID()}`); // created, never started: its control plane died
    const workerId = randomUUID();
    const taken = await make(`hodei-worker-${workerId}`); // renamed when a job took it
    try {
      const listed = (await provider.list()).map((r) => [r.resourceId, r.workerId]).sort();
      assert.deepEqual(listed, [[dead.id, ""], [taken.id, workerId]].sort());
    } finally {
      for (const c of [running, dead, taken]) await c.remove({ force: true });
    }
  });

  it("replaces an idle container that died", async () => {
    const { provider, warnings } = makeProvider(1, 4);
    const protocol = await startWorkerProtocol();
    try {
      provider.startPool(protocol.url);
      const [first] = (await eventually(ourContainers, (cs) => cs.filter(isIdle).length === 1)).filter(isIdle);
      await docker.getContainer(first.Id).kill();
      const after = await eventually(ourContainers, (cs) => cs.length === 1 && cs.filter(isIdle).length === 1 && cs[0].Id !== first.Id, 20_000);
      assert.equal(after.filter(isIdle).length, 1, "replaced");
      assert.equal(after.some((c) => c.Id === first.Id), false, "the dead one was removed");
      assert.ok(warnings.includes("warm container exited while idle; replacing it"));
    } finally {
      await provider.close();
      await protocol.close();
    }
    assert.deepEqual(await ourContainers(), []);
  });
});
