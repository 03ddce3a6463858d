/**
 * Job secrets on the Docker provider: the secret reaches the command over the agent's stream
 * only, so `docker inspect` of the job's running container (its Env, Cmd, Labels, the whole
 * config) holds neither the value nor its base64, while the command has it and its log shows ***.
 * Skips with a visible message when no daemon answers; no container of the cluster is left.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { eventually, runCli, type ServerProcess, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = skipWithoutDocker("the Docker secrets end-to-end tests");

const SECRET = "zebra-7f3c91-quartz";
const NEEDLES = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(SECRET).toString("base64").replace(/=+$/, "")];
const leaks = (text: string) => NEEDLES.filter((needle) => text.includes(needle));

describe("job secrets on the docker provider", { skip: SKIP }, () => {
  let server: ServerProcess;

  const containersOfCluster = () => docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${server.clusterId}`] } });

  before(async () => {
    server = await startServerProcess({ HODEI_PROVIDERS: "local,docker", HODEI_DEFAULT_PROVIDER: "local" });
  });
  afterEach(async () => {
    await eventually(async () => (await containersOfCluster()).length === 0, 20_000);
    assert.deepEqual(await containersOfCluster(), [], "no container of the cluster remains");
  });
  after(async () => {
    await server.stop();
    assert.deepEqual(leaks(server.output.join("\n")), [], "the server never logged the secret");
    server.cleanup();
  });

  it("keeps the secret out of docker inspect of the running container and out of its own log, while the command has it and its log shows ***", async () => {
    const script = 'echo ready; echo $SECRET; printf %s "$SECRET" | base64; [ "$(printf %s "$SECRET" | wc -c)" -eq 19 ] && echo arrived; sleep 300';
    const submitted = await runCli(server, ["run", "--provider", "docker", "--detach", "--secret", `SECRET=${SECRET}`, "--", script]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("arrived"), 30_000);
    const [container] = await docker.listContainers({ filters: { label: [`${LABELS.jobId}=${id}`] } });
    assert.ok(container, "the job's container runs");
    const info = await docker.getContainer(container.Id).inspect();
    assert.equal(info.State.Running, true);
    assert.deepEqual(leaks(JSON.stringify(info)), [], "docker inspect");
    assert.ok(!(info.Config.Env ?? []).some((entry) => entry.startsWith("SECRET=")), "not in the container's environment");
    assert.deepEqual(leaks(JSON.stringify(container)), [], "docker ps");
    const agentLog = await docker.getContainer(container.Id).logs({ stdout: true, stderr: true, follow: false });
    assert.deepEqual(leaks(agentLog.toString("latin1")), [], "the container's own log (the agent's lines)");
    const logs = (await runCli(server, ["logs", id])).stdout;
    assert.equal(logs, "ready\n***\n***\narrived\n");
    const job = await runCli(server, ["jobs", "get", id, "--json"]);
    assert.deepEqual(leaks(job.stdout), []);
    assert.deepEqual((JSON.parse(job.stdout) as { secretNames: string[] }).secretNames, ["SECRET"]);
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  });
});
