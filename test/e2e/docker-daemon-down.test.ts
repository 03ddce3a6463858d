/**
 * The Docker daemon goes away and comes back, without touching the real daemon (other tests use it):
 * the server talks to Docker through a unix-socket proxy this test owns. Taking the proxy down (its
 * listener closed, its open connections destroyed, its socket file removed) is, for the server, the
 * daemon being down: every new connection fails with ENOENT.
 *
 * While it is down: submitted jobs stay queued (never failed), the try that found the daemon gone
 * does not spend an attempt, and `hodei providers` reports docker unhealthy, naming the socket.
 * Once the proxy is back on the same path, the server notices within its re-check period (5 s), the
 * jobs run and succeed, and no container of the cluster remains.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Dockerode from "dockerode";
import { LABELS } from "../../src/providers/docker.js";
import { eventually, type JobJson, jsonCli, runCli, type ServerProcess, sleep, startServerProcess } from "./harness.js";

const DAEMON_SOCKET = "/var/run/docker.sock";
const docker = new Dockerode({ socketPath: DAEMON_SOCKET });
const daemon = await docker.ping().then(
  () => true,
  () => false,
);
if (!daemon && process.env.HODEI_REQUIRE_DOCKER) throw new Error("HODEI_REQUIRE_DOCKER is set but no Docker daemon answers");
const SKIP = daemon ? false : `no Docker daemon answers on ${DAEMON_SOCKET}: Docker daemon-down end-to-end test skipped`;
if (SKIP) console.log(`# ${SKIP}`);

interface ProviderJson {
  name: string;
  healthy: boolean;
  detail: string;
}
interface TokenJson {
  provider: string;
  providerResourceId: string;
  consumed: boolean;
  jobId: string;
}

/** A unix socket that pipes every connection to the real daemon, and can be taken down and brought back. */
class DaemonProxy {
  private server: Server | null = null;
  private readonly open = new Set<Socket>();
  /** Connections accepted since the proxy was created. */
  accepted = 0;

  constructor(
    readonly path: string,
    private readonly target: string,
  ) {}

  async up(): Promise<void> {
    const server = createServer((client) => {
      this.accepted++;
      const upstream = createConnection(this.target);
      for (const socket of [client, upstream]) {
        this.open.add(socket);
        socket.once("close", () => this.open.delete(socket));
      }
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
  }

  /** No more connections: the listener closed, open connections cut, the socket file removed. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of this.open) socket.destroy();
      await closed;
    }
    this.open.clear();
    rmSync(this.path, { force: true });
  }
}

const ENDED = new Set(["succeeded", "failed", "canceled", "timed_out"]);

async function containersOfCluster(clusterId: string) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.clusterId}=${clusterId}`] } });
}

describe("the Docker daemon down, then back", { skip: SKIP }, () => {
  let dir: string;
  let proxy: DaemonProxy;
  let server: ServerProcess;

  const dockerProvider = async () => {
    const provider = (await jsonCli<ProviderJson[]>(server, ["providers"])).find((p) => p.name === "docker");
    assert.ok(provider, "the docker provider is listed");
    return provider;
  };
  const getJob = (id: string) => jsonCli<JobJson>(server, ["jobs", "get", id]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "hodei-dockerproxy-"));
    proxy = new DaemonProxy(join(dir, "docker.sock"), DAEMON_SOCKET);
    await proxy.up();
    server = await startServerProcess({ HODEI_PROVIDERS: "docker", HODEI_DOCKER_SOCKET: proxy.path });
  });
  after(async () => {
    await proxy?.down();
    await server?.stop();
    server?.cleanup();
    if (server) for (const c of await containersOfCluster(server.clusterId)) await docker.getContainer(c.Id).remove({ force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("keeps jobs queued with their attempts unspent, reports docker unhealthy, and runs them once the daemon is back", async (t) => {
    // Through the proxy the daemon answers.
    const up = await dockerProvider();
    assert.equal(up.healthy, true, up.detail);
    assert.ok(proxy.accepted > 0, "the server talks to Docker through the proxy");

    await proxy.down();
    const down = await dockerProvider();
    assert.equal(down.healthy, false, `docker reported unhealthy while the daemon is away (detail: ${down.detail})`);
    assert.ok(down.detail.includes(proxy.path), `the detail names the socket ${proxy.path}: ${down.detail}`);

    // --max-attempts 1: a try that found the daemon gone must not be counted, or the job would fail.
    const ids: string[] = [];
    for (const text of ["back", "back again"]) {
      const submitted = await runCli(server, ["run", "--detach", "--provider", "docker", "--max-attempts", "1", "--", "echo", text]);
      assert.equal(submitted.code, 0, submitted.stderr);
      ids.push(submitted.stdout.trim());
    }
    const [first] = ids;

    // The first job waits in the queue (if it was claimed before the server saw the daemon go, that
    // try is not counted) and says why.
    const requeued = await eventually(async () => {
      const job = await getJob(first);
      return job.state === "queued" && /unavailable/.test(job.reason) ? job : null;
    }, 10_000);
    assert.ok(requeued, `job ${first} waits in the queue with the reason (now: ${JSON.stringify(await getJob(first))})`);
    assert.ok(requeued.reason.includes(proxy.path), `the reason names the socket: ${requeued.reason}`);

    // For a while (past one 5 s health re-check), nothing moves and nothing fails.
    const watchUntil = Date.now() + 6_500;
    let polls = 0;
    // At least three looks, however slow each is on a loaded machine.
    while (Date.now() < watchUntil || polls < 3) {
      for (const id of ids) {
        const job = await getJob(id);
        assert.equal(job.state, "queued", `job ${id} stays queued while the daemon is down (reason: ${job.reason})`);
        const counted = job.attempts - (job.uncountedAttempts ?? 0);
        assert.equal(job.maxAttempts - counted, 1, `job ${id} keeps its one attempt (attempts ${job.attempts}, ${job.uncountedAttempts ?? 0} not counted, of ${job.maxAttempts})`);
        assert.equal(job.maxAttempts, 1, "the user's limit is left as it was");
      }
      const provider = await dockerProvider();
      assert.equal(provider.healthy, false, provider.detail);
      assert.ok(provider.detail.includes(proxy.path), provider.detail);
      polls++;
      await sleep(300);
    }
    assert.ok(polls >= 3, `watched the queue ${polls} times`);
    assert.deepEqual(await containersOfCluster(server.clusterId), [], "no container was created while the daemon was away");

    // The daemon is back on the same path: the jobs run.
    const backAt = Date.now();
    await proxy.up();
    for (const [i, id] of ids.entries()) {
      const done = await eventually(async () => {
        const job = await getJob(id);
        // timeline is the latest try's: the uncounted try's worker is destroyed while the job is still queued.
        return ENDED.has(job.state) && job.timeline.destroyed ? job : null;
      }, 25_000);
      assert.ok(done, `job ${id} finished and its container was removed within 25s of the daemon's return (now: ${JSON.stringify(await getJob(id))})`);
      assert.equal(done.state, "succeeded", done.reason);
      const logs = await runCli(server, ["logs", id]);
      assert.equal(logs.stdout, `${i === 0 ? "back" : "back again"}\n`);
    }
    const elapsed = Date.now() - backAt;
    t.diagnostic(`both jobs succeeded ${elapsed} ms after the daemon came back`);
    assert.ok(elapsed < 20_000, `the jobs succeeded ${elapsed} ms after the daemon came back (the server re-checks every 5 s)`);

    const healthy = await dockerProvider();
    assert.equal(healthy.healthy, true, healthy.detail);

    // Every token that named a container was consumed; the tries made while the daemon was away
    // never created one, so their tokens name nothing and were never usable.
    const tokens = (await jsonCli<TokenJson[]>(server, ["tokens", "--limit", "100"])).filter((t) => t.provider === "docker");
    for (const token of tokens) {
      if (token.providerResourceId === "") assert.equal(token.consumed, false);
      else assert.equal(token.consumed, true, `token of job ${token.jobId}`);
    }
    assert.equal(tokens.filter((t) => t.consumed).length, ids.length, "one consumed token per job");

    const left = await eventually(async () => ((await containersOfCluster(server.clusterId)).length === 0 ? [] : null), 20_000);
    assert.deepEqual(left ?? (await containersOfCluster(server.clusterId)), [], "no container of the cluster remains");
  });
});
