/**
 * TLS end to end with --provider docker: a server with a throwaway CA (test/fixtures/tls.ts), the
 * agent in the container verifying the server with the CA it was handed in HODEI_TLS_CA_PEM. The
 * second server gives workers no CA: its container must refuse the server's certificate, which
 * shows the first one verified rather than trusted blindly. After each server, no container of its
 * cluster remains. Skips with a visible message when no Docker daemon answers, like docker.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { makeTestTls, type TestTls } from "../fixtures/tls.js";
import { LABELS } from "../../src/providers/docker.js";
import { eventually, type JobJson, runCli, type ServerProcess, startServerProcess } from "./harness.js";

const SKIP = skipWithoutDocker("the Docker TLS end-to-end tests");

async function containersOfCluster(clusterId: string) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
}

/** Stops the server and proves (then makes sure) no container of its cluster is left. */
async function stopServer(server: ServerProcess): Promise<void> {
  await server.stop();
  server.cleanup();
  const left = await containersOfCluster(server.clusterId);
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true });
  assert.deepEqual(left, [], "no container of the cluster remains");
}

describe("TLS on the docker provider", { skip: SKIP }, () => {
  let material: TestTls;
  let server: ServerProcess;
  let env: Record<string, string>;

  before(async () => {
    material = makeTestTls();
    env = { HODEI_TLS_CA: material.caCertPath };
    server = await startServerProcess({
      HODEI_PROVIDERS: "local,docker",
      HODEI_DEFAULT_PROVIDER: "docker",
      HODEI_TLS_CERT: material.serverCertPath,
      HODEI_TLS_KEY: material.serverKeyPath,
      HODEI_TLS_CA: material.caCertPath,
    });
  });
  after(async () => {
    await stopServer(server);
    material.cleanup();
  });

  it("runs a job in a container whose agent verifies the server with the CA it was handed", async () => {
    assert.match(server.url, /^https:\/\//);
    const result = await runCli(server, ["--ca-cert", material.caCertPath, "run", "--provider", "docker", "--", "echo", "hello over tls"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "hello over tls\n");
    const [job] = JSON.parse((await runCli(server, ["jobs", "ls", "--provider", "docker", "--limit", "1", "--json"], { env })).stdout) as JobJson[];
    assert.equal(job.state, "succeeded");
    assert.equal(job.provider, "docker");
    await eventually(async () => (await containersOfCluster(server.clusterId)).length === 0, 20_000);
    assert.deepEqual(await containersOfCluster(server.clusterId), []);
  });
});

describe("TLS on the docker provider, workers given no CA", { skip: SKIP }, () => {
  let material: TestTls;
  let server: ServerProcess;

  before(async () => {
    material = makeTestTls();
    server = await startServerProcess({
      HODEI_PROVIDERS: "docker",
      HODEI_TLS_CERT: material.serverCertPath,
      HODEI_TLS_KEY: material.serverKeyPath,
      HODEI_REGISTRATION_TIMEOUT_MS: "6000",
    });
  });
  after(async () => {
    await stopServer(server);
    material.cleanup();
  });

  it("fails the job: the container's agent refuses a certificate its system roots do not verify", async () => {
    const env = { HODEI_TLS_CA: material.caCertPath };
    const id = (await runCli(server, ["run", "--detach", "--", "echo", "never"], { env })).stdout.trim();
    assert.match(id, /\S/);
    const job = await eventually(async () => {
      const j = JSON.parse((await runCli(server, ["jobs", "get", id, "--json"], { env })).stdout) as JobJson;
      return j.timeline.destroyed ? j : null;
    }, 40_000);
    assert.ok(job, "the job ended and its container was destroyed");
    assert.equal(job.state, "failed");
    assert.match(job.reason, /unable to verify the first certificate/);
  });
});
