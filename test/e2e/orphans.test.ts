/**
 * The reaper, end to end: resources that carry this installation's labels but have no live worker
 * row are destroyed once older than the orphan grace; resources of another installation (another
 * cluster id) on the same machine or daemon are never touched.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { isAlive } from "../../src/providers/process-table.js";
import { eventually, jsonCli, type ServerProcess, sleep, startServerProcess } from "./harness.js";
import { DEFAULT_WORKER_IMAGE } from "../../src/core/worker-image.js";

const DOCKER_SKIP = skipWithoutDocker("the Docker orphan test");

/** A detached `sleep 300` carrying a local worker's markers for `clusterId`, as an orphaned job process would. */
function markedSleep(clusterId: string): number {
  const child = spawn("sleep", ["300"], {
    detached: true,
    stdio: "ignore",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HODEI_MANAGED_BY: "hodei", HODEI_PROVIDER: "local", HODEI_CLUSTER_ID: clusterId, HODEI_WORKER_ID: randomUUID(), HODEI_WORKER_PID: "1" },
  });
  child.unref();
  return child.pid!;
}

describe("orphans", () => {
  let server: ServerProcess;
  const strangers: number[] = [];

  before(async () => {
    server = await startServerProcess({ HODEI_PROVIDERS: DOCKER_SKIP ? "local" : "local,docker", HODEI_ORPHAN_GRACE_MS: "1500" });
  });
  after(async () => {
    for (const pid of strangers) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await server.stop();
    server.cleanup();
  });

  it("reaps a local process that carries our markers but has no worker, and spares another cluster's", async () => {
    const orphan = markedSleep(server.clusterId);
    const stranger = markedSleep(`${server.clusterId}-other`);
    strangers.push(stranger);
    assert.ok(isAlive(orphan) && isAlive(stranger));
    const reaped = await eventually(() => !isAlive(orphan), 20_000);
    assert.ok(reaped, "the orphan was reaped");
    await sleep(1500);
    assert.ok(isAlive(stranger), "another installation's process is never touched");
    const [local] = (await jsonCli<{ name: string; orphans: number }[]>(server, ["providers"])).filter((p) => p.name === "local");
    assert.equal(local.orphans, 0);
  });

  it("reaps a labelled container with no worker after the grace, and spares another cluster's", { skip: DOCKER_SKIP }, async () => {
    const make = async (clusterId: string) => {
      const container = await docker.createContainer({
        Image: DEFAULT_WORKER_IMAGE,
        Entrypoint: ["sleep", "300"],
        Cmd: [],
        Labels: { [LABELS.managedBy]: "hodei", [LABELS.clusterId]: clusterId, [LABELS.workerId]: randomUUID() },
        HostConfig: { NetworkMode: "host" },
      });
      await container.start();
      return container.id;
    };
    const orphan = await make(server.clusterId);
    const stranger = await make(`${server.clusterId}-other`);
    try {
      const gone = await eventually(async () => (await docker.listContainers({ all: true, filters: { id: [orphan] } })).length === 0, 30_000);
      assert.ok(gone, "the orphan container was removed");
      const still = await docker.getContainer(stranger).inspect();
      assert.equal(still.State.Running, true, "another installation's container is never touched");
    } finally {
      await docker.getContainer(stranger).remove({ force: true }).catch(() => {});
      await docker.getContainer(orphan).remove({ force: true }).catch(() => {});
    }
  });
});
