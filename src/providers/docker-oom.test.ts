/**
 * A container the kernel killed for memory is told from one killed otherwise, also when Docker
 * handled its exit before its OOM event and recorded OOMKilled false (a race the daemon cannot be
 * made to lose on demand: the real cases below read the daemon's real event log with the inspected
 * state's flag cleared, which is what the race leaves).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import type Dockerode from "dockerode";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { busyboxRootfs, importRootfs } from "./docker-image.js";
import { wasOomKilled } from "./docker-oom.js";

const MIB = 1024 * 1024;

function inspected(state: Partial<Dockerode.ContainerInspectInfo["State"]>, memory: number): Dockerode.ContainerInspectInfo {
  return {
    Id: "c".repeat(64),
    State: { OOMKilled: false, ExitCode: 137, StartedAt: "2026-11-30T04:43:22.616244097Z", FinishedAt: "2026-11-30T04:43:22.826133926Z", ...state },
    HostConfig: { Memory: memory },
  } as unknown as Dockerode.ContainerInspectInfo;
}

function fakeDocker(chunks: string[]) {
  const queries: Dockerode.GetEventsOptions[] = [];
  const fake = {
    getEvents: async (options: Dockerode.GetEventsOptions) => {
      queries.push(options);
      return Readable.from(chunks);
    },
  } as unknown as Dockerode;
  return { fake, queries };
}

const OOM_EVENT = `{"status":"oom","id":"${"c".repeat(64)}","Type":"container","Action":"oom","time":1796013802}\n`;

describe("wasOomKilled", () => {
  it("trusts OOMKilled when Docker recorded it, without reading events", async () => {
    const { fake, queries } = fakeDocker([]);
    assert.equal(await wasOomKilled(fake, inspected({ OOMKilled: true }, 32 * MIB)), true);
    assert.equal(queries.length, 0);
  });

  it("finds the oom event of a container that exited 137 under a memory limit with OOMKilled false (its exit was handled first)", async () => {
    // The event split across two chunks, as a stream may deliver it.
    const { fake, queries } = fakeDocker([OOM_EVENT.slice(0, 60), OOM_EVENT.slice(60)]);
    assert.equal(await wasOomKilled(fake, inspected({}, 32 * MIB)), true);
    assert.equal(queries.length, 1);
    const [query] = queries;
    assert.deepEqual(query.filters, { container: ["c".repeat(64)], event: ["oom"] });
    assert.equal(query.since, 1796013802, "from the second it started");
    assert.equal(query.until, 1796013804, "to a second after the second it exited");
  });

  it("is false when no oom event was logged (a docker kill), when there is no memory limit, and for another exit code", async () => {
    const none = fakeDocker([]);
    assert.equal(await wasOomKilled(none.fake, inspected({}, 32 * MIB)), false);
    const other = fakeDocker([OOM_EVENT]);
    assert.equal(await wasOomKilled(other.fake, inspected({}, 0)), false, "no limit: not the limit's doing");
    assert.equal(await wasOomKilled(other.fake, inspected({ ExitCode: 1 }, 32 * MIB)), false);
    assert.equal(other.queries.length, 0, "no events read for either");
  });

  it("reads no more than a bounded amount of the event stream", async () => {
    const noise = `${"x".repeat(1024)}\n`;
    const { fake } = fakeDocker([...Array.from({ length: 100 }, () => noise), OOM_EVENT]);
    assert.equal(await wasOomKilled(fake, inspected({}, 32 * MIB)), false);
  });

  describe("on the Docker daemon", { skip: skipWithoutDocker("the OOM event tests") }, () => {
    const runId = randomUUID().slice(0, 8);
    const image = `hodei-test-busybox:oom-${runId}`;
    const label = `io.hodei.test-oom=${runId}`;

    before(async () => {
      await importRootfs(docker, { tag: image, entries: await busyboxRootfs("/bin/busybox"), changes: [`LABEL ${label}`] });
    });

    after(async () => {
      const left = await docker.listContainers({ all: true, filters: { label: [label] } });
      for (const c of left) await docker.getContainer(c.Id).remove({ force: true });
      assert.deepEqual(
        (await docker.listContainers({ all: true, filters: { label: [label] } })).map((c) => c.Id),
        [],
        "no container is left",
      );
      await docker.getImage(image).remove({ force: true });
    });

    /**
     * Runs cmd in a 32 MiB container to its end and hands its inspected state to check, before the
     * container is removed: as in the provider, which judges a worker before destroying it (the
     * daemon drops an OOM event that comes after its container is gone).
     */
    async function run(cmd: string, kill: boolean, check: (info: Dockerode.ContainerInspectInfo) => Promise<void>): Promise<void> {
      const container = await docker.createContainer({
        Image: image,
        Cmd: ["/bin/sh", "-c", cmd],
        Labels: { "io.hodei.test-oom": runId },
        HostConfig: { Memory: 32 * MIB, MemorySwap: 32 * MIB, NetworkMode: "none" },
      });
      try {
        await container.start();
        if (kill) await container.kill();
        await container.wait();
        await check(await container.inspect());
      } finally {
        await container.remove({ force: true });
      }
    }

    it("finds a real OOM kill in the daemon's event log, also with the flag cleared, and none for a docker kill", async () => {
      // exec: the shell itself (the container's main process) becomes the process that runs out.
      await run("exec tail -c 300m /dev/zero", false, async (oom) => {
        assert.equal(oom.State.ExitCode, 137);
        // OOMKilled itself may be false here: that is the race this module exists for.
        assert.equal(await wasOomKilled(docker, oom), true, `OOMKilled was ${oom.State.OOMKilled}`);
        assert.equal(await wasOomKilled(docker, { ...oom, State: { ...oom.State, OOMKilled: false } }), true, "found through the oom event");
      });
      await run("exec sleep 60", true, async (killed) => {
        assert.equal(killed.State.ExitCode, 137);
        assert.equal(killed.State.OOMKilled, false);
        assert.equal(await wasOomKilled(docker, killed), false);
      });
    });
  });
});
