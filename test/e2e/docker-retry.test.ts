/**
 * Exit-code retries with --provider docker: a real server, a real Docker daemon, containers from
 * the offline worker image. A container's filesystem dies with it, so the flaky command keeps its
 * state outside: it asks a small HTTP server of this test (reached over the host network, as the
 * workers are configured here) and exits 3 while that answers 503, which it does once. After every
 * test no container of the cluster remains. Skips with a visible message when no daemon answers.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { eventually, type JobJson, jsonCli, runCli, type ServerProcess, startServerProcess } from "./harness.js";

const SKIP = skipWithoutDocker("the Docker exit-code retry tests");

interface RetriedJobJson extends JobJson {
  retryOnExitCodes?: string;
  attemptHistory: { number: number; exitCode?: number; reason?: string; providerResourceId: string }[];
}

describe("exit-code retries on the docker provider", { skip: SKIP }, () => {
  let server: ServerProcess;
  let flakyServer: Server;
  let flakyUrl: string;
  /** Requests the flaky endpoint answered, by path: the first of each path gets 503. */
  const asked = new Map<string, number>();

  async function containersOfCluster(clusterId: string) {
    return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
  }

  before(async () => {
    flakyServer = createServer((req, res) => {
      const count = (asked.get(req.url ?? "") ?? 0) + 1;
      asked.set(req.url ?? "", count);
      res.writeHead(count === 1 ? 503 : 200, { "content-type": "text/plain" }).end(count === 1 ? "not yet\n" : "ready\n");
    });
    await new Promise<void>((resolve) => flakyServer.listen(0, "127.0.0.1", resolve));
    flakyUrl = `http://127.0.0.1:${(flakyServer.address() as AddressInfo).port}`;
    server = await startServerProcess({ HODEI_PROVIDERS: "local,docker", HODEI_DEFAULT_PROVIDER: "docker" });
  });
  afterEach(async () => {
    await eventually(async () => (await containersOfCluster(server.clusterId)).length === 0, 20_000);
    assert.deepEqual(await containersOfCluster(server.clusterId), [], "no container of the cluster remains");
  });
  after(async () => {
    await server.stop();
    server.cleanup();
    for (const c of await containersOfCluster(server.clusterId)) await docker.getContainer(c.Id).remove({ force: true });
    await new Promise<void>((resolve) => flakyServer.close(() => resolve()));
  });

  it("retries a flaky command that exits 3 under --retry-on-exit 3 in a new container: the job succeeds in 2 attempts, attempt 1 shows exit code 3", async () => {
    const url = `${flakyUrl}/job-1`;
    const command = `wget -q -O- ${url} || exit 3`;
    const run = await runCli(server, ["run", "--provider", "docker", "--max-attempts", "3", "--retry-on-exit", "3", "--", command]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "ready\n");
    assert.equal(asked.get("/job-1"), 2, "one request per attempt");
    const [listed] = await jsonCli<RetriedJobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
    const job = await jsonCli<RetriedJobJson>(server, ["jobs", "get", listed.id]);
    assert.deepEqual([job.state, job.exitCode, job.attempts, job.retryOnExitCodes], ["succeeded", 0, 2, "3"]);
    const [first, second] = job.attemptHistory;
    assert.deepEqual([first.exitCode, first.reason], [3, "the command exited with code 3"]);
    assert.equal(second.exitCode, 0);
    assert.match(first.providerResourceId, /^[0-9a-f]{64}$/);
    assert.notEqual(first.providerResourceId, second.providerResourceId, "each attempt in a new container");
  });

  it("does not retry an exit code not in the list", async () => {
    const run = await runCli(server, ["run", "--provider", "docker", "--max-attempts", "3", "--retry-on-exit", "3", "--", `wget -q -O- ${flakyUrl}/job-2 || exit 4`]);
    assert.equal(run.code, 4, run.stderr);
    assert.equal(asked.get("/job-2"), 1, "one attempt only");
    const [job] = await jsonCli<RetriedJobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
    assert.deepEqual([job.state, job.exitCode, job.attempts], ["failed", 4, 1]);
  });
});
