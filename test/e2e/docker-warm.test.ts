/**
 * The Docker warm pool end to end (HODEI_DOCKER_WARM_WORKERS=2, HODEI_DOCKER_MAX_WORKERS=3): jobs
 * run on containers that existed before they were submitted, each container runs one job and is
 * removed, the pool refills, the cluster never has more than 3 containers, no token is in any
 * container's config, a server stop leaves no container, and the pool of a control plane killed
 * with SIGKILL is reaped by the next one. Runs on an image of its own (the shared default image is
 * never rebuilt here). Skips with a visible message when no daemon answers; CI always has one.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { assembleAgentRuntime, buildWorkerImage } from "../../src/providers/docker-image.js";
import { eventually, jsonCli, ROOT, runCli, type ServerProcess, startServerProcess, type TokenJson, waitDestroyed } from "./harness.js";

const SKIP = skipWithoutDocker("the Docker warm pool end-to-end tests");
const IMAGE = `hodei-worker:e2e-pool-${randomUUID().slice(0, 8)}`;
const MAX_WORKERS = 3;

type Container = Awaited<ReturnType<typeof docker.listContainers>>[number];
const isIdle = (c: Container) => c.Labels[LABELS.pool] === "warm" && c.Names[0].startsWith("/hodei-warm-") && c.State === "running";

function containersOf(clusterId: string) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
}

async function idleContainers(clusterId: string, count: number): Promise<Container[]> {
  let idle: Container[] = [];
  await eventually(async () => (idle = (await containersOf(clusterId)).filter(isIdle)).length === count, 60_000);
  assert.equal(idle.length, count, `${count} idle containers`);
  return idle;
}

function warmServer(extra: Record<string, string> = {}, options = {}) {
  return startServerProcess(
    { HODEI_PROVIDERS: "docker", HODEI_DOCKER_IMAGE: IMAGE, HODEI_DOCKER_WARM_WORKERS: "2", HODEI_DOCKER_MAX_WORKERS: String(MAX_WORKERS), ...extra },
    options,
  );
}

describe("the Docker warm pool", { skip: SKIP }, () => {
  const servers: ServerProcess[] = [];

  before(async () => {
    const runtime = await assembleAgentRuntime({ targetDir: resolve(ROOT, ".hodei", "agent-runtime"), nodePath: process.execPath, agentPath: resolve(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: IMAGE, runtimeDir: runtime.dir });
  });
  after(async () => {
    for (const server of servers) {
      await server.kill();
      for (const c of await containersOf(server.clusterId)) await docker.getContainer(c.Id).remove({ force: true });
      server.cleanup();
    }
    await docker.getImage(IMAGE).remove({ force: true }).catch(() => {});
  });

  it("runs jobs on containers started before they were submitted, each once, within capacity; refills; a stop leaves none", async () => {
    const server = await warmServer();
    servers.push(server);
    const before = new Set((await idleContainers(server.clusterId, 2)).map((c) => c.Id));

    // One job: it runs on one of the idle containers, whose config holds no token.
    const first = (await runCli(server, ["run", "--provider", "docker", "--detach", "--", "echo ready; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", first])).stdout.includes("ready"), 30_000);
    const [firstToken] = (await jsonCli<TokenJson[]>(server, ["tokens", "--limit", "100"])).filter((t) => t.jobId === first);
    assert.ok(before.has(firstToken.providerResourceId), "the job's container existed before the job was submitted");
    const info = await docker.getContainer(firstToken.providerResourceId).inspect();
    assert.equal(info.State.Running, true);
    // Renamed after its worker a second after the job started, off the job's path.
    const renamed = await eventually(async () => (await docker.getContainer(firstToken.providerResourceId).inspect()).Name === `/hodei-worker-${firstToken.workerId}`, 10_000);
    assert.equal(renamed, true, "the taken container is named after its worker");
    for (const part of [info, info.Config.Env, info.Config.Cmd, info.Config.Entrypoint, info.Config.Labels, info.Args]) {
      assert.doesNotMatch(JSON.stringify(part ?? null), /hodei_otp_|OTP_TOKEN/, "no token in docker inspect");
    }
    await idleContainers(server.clusterId, 2); // refilled beside the running job: 3 containers, the capacity

    // Four more short jobs at once, while the first still runs: never more than 3 containers.
    let most = 0;
    let isSampling = true;
    const sampling = (async () => {
      while (isSampling) {
        most = Math.max(most, (await containersOf(server.clusterId)).length);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const results = await Promise.all([1, 2, 3, 4].map((n) => runCli(server, ["run", "--provider", "docker", "--", `echo job ${n}`])));
    assert.equal((await runCli(server, ["cancel", first])).code, 0);
    assert.equal((await waitDestroyed(server, first)).state, "canceled");
    isSampling = false;
    await sampling;
    results.forEach((r, i) => assert.deepEqual([r.code, r.stdout], [0, `job ${i + 1}\n`], r.stderr));
    assert.ok(most <= MAX_WORKERS, `at most ${MAX_WORKERS} containers at once (saw ${most})`);

    const tokens = (await jsonCli<TokenJson[]>(server, ["tokens", "--limit", "100"])).filter((t) => t.provider === "docker");
    assert.equal(tokens.length, 5);
    assert.equal(new Set(tokens.map((t) => t.providerResourceId)).size, 5, "each container ran one job");
    for (const t of tokens) assert.equal(t.consumed, true);
    const jobs = await jsonCli<{ id: string }[]>(server, ["jobs", "ls", "--limit", "10"]);
    for (const job of jobs) await waitDestroyed(server, job.id);
    const left = await containersOf(server.clusterId);
    for (const t of tokens) assert.equal(left.some((c) => c.Id === t.providerResourceId), false, "every used container was removed");
    const refilled = await idleContainers(server.clusterId, 2);
    assert.ok(refilled.every((c) => !tokens.some((t) => t.providerResourceId === c.Id)), "the pool refilled with new containers");

    assert.equal(await server.stop(), 0);
    assert.deepEqual(await containersOf(server.clusterId), [], "a server stop leaves no container with our labels");
  });

  it("reaps the pool of a control plane killed with SIGKILL: the next one removes its containers", async () => {
    const dead = await warmServer();
    servers.push(dead);
    const idle = (await idleContainers(dead.clusterId, 2)).map((c) => c.Id);
    await dead.kill();
    // Its attachments closed with it: the idle agents see stdin close and exit.
    await eventually(async () => (await containersOf(dead.clusterId)).every((c) => c.State === "exited"), 30_000);
    const next = await warmServer({ HODEI_DOCKER_WARM_WORKERS: "0" }, { dataDir: dead.dataDir, clusterId: dead.clusterId });
    servers.push(next);
    await eventually(async () => (await containersOf(next.clusterId)).length === 0, 30_000);
    const left = await containersOf(next.clusterId);
    assert.deepEqual(left.map((c) => c.Id).filter((id) => idle.includes(id)), [], "the dead control plane's pool was reaped");
    assert.deepEqual(left, []);
    assert.equal(await next.stop(), 0);
    assert.deepEqual(await containersOf(next.clusterId), []);
  });
});
