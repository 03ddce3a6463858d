/**
 * The provider contract on a real Docker daemon, plus Docker specifics: the full container id as
 * provider_resource_id, labels, limits, a missing image, and scoping by cluster id.
 * Skips, with a visible reason, when no daemon answers (a laptop); CI always has one.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { PermanentError } from "../core/errors.js";
import { DockerProvider, LABELS } from "./docker.js";
import { assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } from "./docker-image.js";
import { describeProvider, workerSpec } from "./provider.contract.js";

const ROOT = resolve(import.meta.dirname, "../..");
const SKIP = skipWithoutDocker("the Docker provider tests");

const CLUSTER_ID = `test-${randomUUID().slice(0, 8)}`;
const RUNTIME_DIR = resolve(ROOT, ".hodei", "agent-runtime");

async function ourContainers(clusterId = CLUSTER_ID) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
}

function makeProvider(clusterId = CLUSTER_ID, defaultImage = DEFAULT_WORKER_IMAGE) {
  return new DockerProvider({
    clusterId,
    socketPath: "/var/run/docker.sock",
    defaultImage,
    networkMode: "host",
    runtimeDir: RUNTIME_DIR,
    agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
    docker,
  });
}

describe("DockerProvider", { skip: SKIP }, () => {
  before(async () => {
    const runtime = await assembleAgentRuntime({ targetDir: RUNTIME_DIR, nodePath: process.execPath, agentPath: resolve(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir });
  });

  after(async () => {
    for (const c of await ourContainers()) await docker.getContainer(c.Id).remove({ force: true });
  });

  describeProvider("docker", async () => ({
    provider: makeProvider(),
    cleanup: async () => {},
    killWorker: async (resource) => {
      await docker.getContainer(resource.resourceId).kill();
    },
    unknownResourceId: "0".repeat(64),
  }));

  describe("docker specifics", () => {
    it("names the worker by its full 64-hex container id, reported before the container starts", async () => {
      const provider = makeProvider();
      let createdState = "";
      const s = workerSpec({
        cpuMillis: 500,
        memoryMb: 128,
        onCreated: async (r) => {
          createdState = (await docker.getContainer(r.resourceId).inspect()).State.Status;
        },
      });
      const resource = await provider.start(s);
      try {
        assert.match(resource.resourceId, /^[0-9a-f]{64}$/);
        assert.equal(createdState, "created", "onCreated runs between create and start");
        const info = await docker.getContainer(resource.resourceId).inspect();
        assert.equal(info.Id, resource.resourceId);
        assert.equal(info.Name, `/${s.name}`);
        assert.equal(info.Config.Labels[LABELS.workerId], s.workerId);
        assert.equal(info.Config.Labels[LABELS.jobId], s.jobId);
        assert.equal(info.Config.Labels[LABELS.attempt], "1");
        assert.equal(info.Config.Labels[LABELS.clusterId], CLUSTER_ID);
        assert.equal(info.HostConfig.NetworkMode, "host");
        assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
        assert.equal(info.HostConfig.NanoCpus, 500_000_000);
      } finally {
        await provider.stop(resource.resourceId, 1000);
      }
      assert.deepEqual(await ourContainers(), []);
    });

    it("fails fast and permanently when the image does not exist", async () => {
      const provider = makeProvider();
      const started = Date.now();
      await assert.rejects(provider.start(workerSpec({ image: `hodei-no-such-image:${randomUUID().slice(0, 8)}` })), (err: Error) => {
        assert.ok(err instanceof PermanentError, `a PermanentError, got ${err.name}`);
        assert.match(err.message, /not found/);
        return true;
      });
      assert.ok(Date.now() - started < 10_000);
      assert.deepEqual(await ourContainers(), []);
    });

    it("never lists another cluster's containers", async () => {
      const mine = makeProvider();
      const theirs = makeProvider(`${CLUSTER_ID}-other`);
      const resource = await theirs.start(workerSpec());
      try {
        assert.deepEqual(await mine.list(), []);
        assert.equal((await theirs.list()).length, 1);
      } finally {
        await theirs.stop(resource.resourceId, 1000);
      }
    });

    it("reports the container's last output", async () => {
      const provider = makeProvider();
      const resource = await provider.start(workerSpec());
      try {
        // The agent logs its failed attempts to reach the unreachable server.
        let output = "";
        for (let i = 0; i < 100 && !output; i++) {
          output = await provider.lastOutput(resource.resourceId);
          if (!output) await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(output, /cannot register with the control plane/);
      } finally {
        await provider.stop(resource.resourceId, 1000);
      }
    });
  });
});
