/**
 * The queue on the docker provider with one container at a time (HODEI_DOCKER_MAX_WORKERS=1): waiting
 * jobs start by priority, and a job that cannot start within its queue timeout ends timed_out saying
 * the provider was at capacity. A container cannot see this test's files, so the job holding the only
 * worker waits on a small HTTP gate of this test (reached over the host network, as the workers are
 * configured here). After every test no container of the cluster remains. Skips with a visible
 * message when no daemon answers.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { eventually, type JobJson, jobWhen, jsonCli, runCli, type ServerProcess, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = skipWithoutDocker("the Docker queue tests");

type QueueJobJson = JobJson & { priority: number; queueTimeoutSeconds: number };

describe("the queue on the docker provider, one container at a time", { skip: SKIP }, () => {
  let server: ServerProcess;
  let gateServer: Server;
  let gateUrl: string;
  /** Gate paths that answer 200; every other path answers 503 (closed). */
  const open = new Set<string>();

  async function containersOfCluster(clusterId: string) {
    return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
  }

  before(async () => {
    gateServer = createServer((req, res) => {
      const isOpen = open.has(req.url ?? "");
      res.writeHead(isOpen ? 200 : 503, { "content-type": "text/plain" }).end(isOpen ? "open\n" : "closed\n");
    });
    await new Promise<void>((resolve) => gateServer.listen(0, "127.0.0.1", resolve));
    gateUrl = `http://127.0.0.1:${(gateServer.address() as AddressInfo).port}`;
    server = await startServerProcess({ HODEI_PROVIDERS: "local,docker", HODEI_DEFAULT_PROVIDER: "docker", HODEI_DOCKER_MAX_WORKERS: "1" });
  });
  afterEach(async () => {
    await eventually(async () => (await containersOfCluster(server.clusterId)).length === 0, 20_000);
    assert.deepEqual(await containersOfCluster(server.clusterId), [], "no container of the cluster remains");
  });
  after(async () => {
    await server.stop();
    server.cleanup();
    for (const c of await containersOfCluster(server.clusterId)) await docker.getContainer(c.Id).remove({ force: true });
    await new Promise<void>((resolve) => gateServer.close(() => resolve()));
  });

  async function detach(args: string[]): Promise<string> {
    const result = await runCli(server, ["run", "--provider", "docker", "--detach", ...args]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  /** Submits a job that holds the only container until `release()`; resolves once it runs. */
  async function blocker(name: string): Promise<{ id: string; release: () => void }> {
    const id = await detach(["--", `until wget -q -O /dev/null ${gateUrl}/${name} 2>/dev/null; do sleep 0.1; done`]);
    const running = await jobWhen(server, id, (j) => j.state === "running", 60_000);
    assert.equal(running.state, "running", running.reason);
    return { id, release: () => open.add(`/${name}`) };
  }

  it("starts the waiting jobs by priority, and in submit order within one priority", async () => {
    const block = await blocker("priority");
    const low = await detach(["--priority", "-5", "--", "true"]);
    const first = await detach(["--", "true"]);
    const high = await detach(["--priority", "10", "--", "true"]);
    assert.equal((await jsonCli<QueueJobJson>(server, ["jobs", "get", high])).priority, 10);
    block.release();
    const done = [];
    for (const id of [low, first, high]) done.push(await waitDestroyed(server, id, 60_000));
    for (const job of done) assert.equal(job.state, "succeeded", job.reason);
    const byStart = [...done].sort((a, b) => Date.parse(a.timeline.started) - Date.parse(b.timeline.started)).map((j) => j.id);
    assert.deepEqual(byStart, [high, first, low]);
    assert.equal((await waitDestroyed(server, block.id, 60_000)).state, "succeeded");
  });

  it("ends a job that cannot start within its queue timeout as timed_out, saying docker was at capacity", async () => {
    const block = await blocker("queue-timeout");
    const result = await runCli(server, ["run", "--provider", "docker", "--queue-timeout", "2", "--", "echo should-not-run"]);
    assert.equal(result.code, 124, result.stderr);
    assert.equal(result.stdout, "", "the command never ran");
    assert.match(result.stderr, /timed_out: never started within its queue timeout of 2s: docker was at capacity \(1 of 1 workers busy\)/);
    const [job] = await jsonCli<QueueJobJson[]>(server, ["jobs", "ls", "--state", "timed_out", "--limit", "1"]);
    assert.equal(job.attempts, 0, "no container was started for it");
    assert.equal((await jsonCli<QueueJobJson>(server, ["jobs", "get", block.id])).state, "running", "the running job is untouched");
    block.release();
    assert.equal((await waitDestroyed(server, block.id, 60_000)).state, "succeeded");
  });
});
