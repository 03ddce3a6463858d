/**
 * Several `hodei server` replicas on one database, end to end, with the local provider: both
 * replicas run on this machine (one node), share a data directory (as replicas on one node share a
 * volume: secret.key, admin.key, work directories) and one database URL, and their workers reach
 * them through a small TCP balancer standing in for the Kubernetes Service, so an agent whose
 * replica dies reconnects to the other with its session.
 *
 * The same tests run on both databases: a SQLite file in the shared data directory (two processes
 * on one SQLite file in WAL mode are a valid multi-process setup), and PostgreSQL (a new database
 * per cluster, in the throwaway cluster of test/fixtures/postgres.ts; skipped without PostgreSQL
 * unless HODEI_REQUIRE_POSTGRES=1).
 *
 * Every test proves no worker process is left (the process table).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import { findMarkedProcesses } from "../../src/providers/process-table.js";
import { skipWithoutPostgres, startPostgres, type TestPostgres } from "../fixtures/postgres.js";
import { value } from "../fixtures/prometheus-text.js";
import { anyClusterProcesses, eventually, killCluster, leftoverProcesses, sendKey, type ServerProcess, sleep, startServerProcess } from "./harness.js";

const FINAL = new Set(["succeeded", "failed", "canceled", "timed_out"]);

/** A TCP balancer in front of the replicas' ports (the Service): round robin over the ones that accept. */
async function startBalancer(): Promise<{ port: number; backends: number[]; close(): Promise<void> }> {
  const backends: number[] = [];
  const sockets = new Set<net.Socket>();
  let next = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    client.pause();
    const tryBackend = (left: number) => {
      if (left === 0 || backends.length === 0) return client.destroy();
      const port = backends[next++ % backends.length];
      const upstream = net.connect({ host: "127.0.0.1", port });
      let isConnected = false;
      upstream.once("connect", () => {
        isConnected = true;
        sockets.add(upstream);
        upstream.on("close", () => sockets.delete(upstream));
        client.pipe(upstream).pipe(client);
        client.resume();
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      });
      // A replica that refuses (it died): the next one. One that breaks later: the client sees it.
      upstream.on("error", () => (isConnected ? client.destroy() : tryBackend(left - 1)));
    };
    tryBackend(backends.length);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    backends,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The URL of an empty database for one cluster, whose shared data directory is given. */
export type NewDatabase = (dataDir: string) => Promise<string>;

export interface Cluster {
  replicas: ServerProcess[];
  balancer: Awaited<ReturnType<typeof startBalancer>>;
  dataDir: string;
  clusterId: string;
}

/** Starts `count` replicas on one database and data directory, one after the other (the first writes admin.key). */
export async function startReplicas(newDatabase: NewDatabase, count: number, env: Record<string, string> = {}): Promise<Cluster> {
  const dataDir = mkdtempSync(join(tmpdir(), "hodei-replicas-"));
  const clusterId = `t${randomUUID().slice(0, 8)}`;
  const balancer = await startBalancer();
  const databaseUrl = await newDatabase(dataDir);
  const replicas: ServerProcess[] = [];
  for (let i = 0; i < count; i++) {
    const replica = await startServerProcess(
      {
        HODEI_DATABASE_URL: databaseUrl,
        HODEI_LOCAL_WORKER_SERVER_URL: `http://127.0.0.1:${balancer.port}`,
        HODEI_NODE_ID: "node-1",
        ...env,
      },
      { dataDir, clusterId },
    );
    balancer.backends.push(replica.workerPort);
    replicas.push(replica);
  }
  return { replicas, balancer, dataDir, clusterId };
}

/** Stops the replicas and the balancer, then kills what is left; returns what was left before that kill. */
export async function stopCluster(c: Cluster): Promise<Awaited<ReturnType<typeof anyClusterProcesses>>> {
  for (const r of c.replicas) await r.stop();
  await c.balancer.close();
  const left = await anyClusterProcesses(c.clusterId);
  killCluster(c.clusterId);
  rmSync(c.dataDir, { recursive: true, force: true });
  return left;
}

function api(server: ServerProcess) {
  return createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
}

/** Each job's command appends its tag to this file: a tag twice is a job that ran twice. */
function appendedTags(file: string): string[] {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}

function duplicates(tags: string[]): string[] {
  const seen = new Set<string>();
  return tags.filter((t) => (seen.has(t) ? true : (seen.add(t), false)));
}

/** Polls until every job is final (through the given replicas in turn); returns their final states. */
async function waitAllFinal(clients: ReturnType<typeof api>[], ids: string[], timeoutMs: number): Promise<Map<string, { state: string; reason: string }>> {
  const states = new Map<string, { state: string; reason: string }>();
  const deadline = Date.now() + timeoutMs;
  let turn = 0;
  while (Date.now() < deadline) {
    for (const id of ids) {
      if (states.has(id) && FINAL.has(states.get(id)!.state)) continue;
      const job = await clients[turn++ % clients.length].getJob({ id });
      states.set(id, { state: job.state, reason: job.reason });
    }
    if (ids.every((id) => FINAL.has(states.get(id)!.state))) break;
    await sleep(250);
  }
  return states;
}

/** The replica whose output says it dispatched the job (the agent's stream is on it). */
function dispatcherOf(replicas: ServerProcess[], jobId: string): number {
  return replicas.findIndex((r) => r.output.some((line) => line.includes('"job dispatched"') && line.includes(jobId)));
}

export function replicaTests(newDatabase: NewDatabase): void {
  let cluster: Cluster | undefined;
  const scratch: string[] = [];
  afterEach(async () => {
    if (cluster) await stopCluster(cluster);
    cluster = undefined;
  });
  after(() => {
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });

  function outputFile(): string {
    const dir = mkdtempSync(join(tmpdir(), "hodei-replicas-out-"));
    scratch.push(dir);
    return join(dir, "ran");
  }

  it("runs 200 jobs submitted through both replicas alternately, each exactly once, all succeeded", async () => {
    cluster = await startReplicas(newDatabase, 2);
    const clients = cluster.replicas.map(api);
    const file = outputFile();
    const ids: string[] = [];
    const started = Date.now();
    for (let i = 0; i < 200; i++) {
      const { job } = await clients[i % 2].submitJob({ command: ["sh", "-c", `echo "$TAG" >> ${file}`], env: { TAG: `tag-${i}` } });
      ids.push(job!.id);
    }
    const states = await waitAllFinal(clients, ids, 180_000);
    const seconds = (Date.now() - started) / 1000;
    const notSucceeded = ids.filter((id) => states.get(id)?.state !== "succeeded").map((id) => `${id}: ${states.get(id)?.state} ${states.get(id)?.reason}`);
    assert.deepEqual(notSucceeded, []);
    const tags = appendedTags(file);
    assert.deepEqual(duplicates(tags), [], "no job ran twice");
    assert.equal(new Set(tags).size, 200, "every job ran");
    const dispatchedBy = cluster.replicas.map((r) => r.output.filter((l) => l.includes('"job dispatched"')).length);
    console.log(`200 jobs through 2 replicas: ${seconds.toFixed(1)} s; dispatched by each replica: ${dispatchedBy.join(", ")}`);
    assert.deepEqual(await leftoverProcesses(cluster), [], "no worker process left");
  });

  it("survives one replica killed with SIGKILL while 50 jobs run: all end, none twice, no process left, the survivor leads within the lease", async () => {
    const leaseMs = 2000;
    cluster = await startReplicas(newDatabase, 2, { HODEI_LEADER_LEASE_MS: String(leaseMs), HODEI_REGISTRATION_TIMEOUT_MS: "10000" });
    const clients = cluster.replicas.map(api);
    const file = outputFile();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const { job } = await clients[i % 2].submitJob({ command: ["sh", "-c", `echo "$TAG" >> ${file}; sleep 3`], env: { TAG: `tag-${i}` } });
      ids.push(job!.id);
    }
    // Kill the leader (whichever holds the lease then: under load a 2 s lease may change hands) once some jobs run.
    assert.ok(await eventually(async () => appendedTags(file).length >= 10, 30_000), "jobs started");
    const isLeader = async (r: ServerProcess) => /^hodei_leader 1$/m.test(await (await fetch(`${r.url}/metrics`)).text());
    let leader = -1;
    assert.ok(await eventually(async () => (leader = (await Promise.all(cluster!.replicas.map(isLeader))).indexOf(true)) >= 0, 10_000), "a leader");
    const [a, b] = leader === 0 ? cluster.replicas : [cluster.replicas[1], cluster.replicas[0]];
    const survivorClient = clients[1 - leader];
    const killedAt = Date.now();
    await a.kill();
    cluster.balancer.backends.splice(leader, 1);
    const becameLeader = await eventually(() => isLeader(b), 3 * leaseMs, 50);
    const takeoverMs = Date.now() - killedAt;
    assert.ok(becameLeader, "the survivor became the leader");
    console.log(`survivor leader ${takeoverMs} ms after the SIGKILL (lease ${leaseMs} ms)`);
    assert.ok(takeoverMs <= leaseMs + leaseMs / 3 + 1000, `took over within the lease (${takeoverMs} ms)`);
    const states = await waitAllFinal([survivorClient], ids, 120_000);
    const notFinal = ids.filter((id) => !FINAL.has(states.get(id)?.state ?? ""));
    assert.deepEqual(notFinal, [], "every job ended");
    const counts = new Map<string, number>();
    for (const { state } of states.values()) counts.set(state, (counts.get(state) ?? 0) + 1);
    console.log(`after the SIGKILL: ${JSON.stringify(Object.fromEntries(counts))}`);
    assert.deepEqual(duplicates(appendedTags(file)), [], "no job ran twice");
    assert.equal(counts.get("succeeded"), 50, `all succeeded: ${JSON.stringify([...states].filter(([, s]) => s.state !== "succeeded"))}`);
    assert.deepEqual(await leftoverProcesses(cluster, 30_000), [], "no worker process left");
  });

  it("never runs more than the capacity (4) with two replicas claiming", async () => {
    cluster = await startReplicas(newDatabase, 2, { HODEI_LOCAL_MAX_WORKERS: "4", HODEI_RECONCILE_INTERVAL_MS: "100" });
    const clients = cluster.replicas.map(api);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) {
      const { job } = await clients[i % 2].submitJob({ command: ["sh", "-c", `echo "ran job $TAG"; sleep 0.3`], env: { TAG: `tag-${i}` } });
      ids.push(job!.id);
    }
    let maxLive = 0;
    let samples = 0;
    let done = false;
    const sampling = (async () => {
      while (!done) {
        const { workers } = await clients[samples % 2].listWorkers({});
        maxLive = Math.max(maxLive, workers.length);
        samples++;
        await sleep(20);
      }
    })();
    const states = await waitAllFinal(clients, ids, 120_000);
    done = true;
    await sampling;
    console.log(`capacity 4, two replicas: at most ${maxLive} live workers in ${samples} samples`);
    assert.ok(maxLive <= 4, `never more than 4 live workers (saw ${maxLive})`);
    assert.ok(maxLive >= 2, "workers ran side by side (the test could have seen too many)");
    assert.deepEqual(ids.filter((id) => states.get(id)?.state !== "succeeded"), []);
    // Metrics: each start and dispatch counted once over both replicas; the database gauges on the leader only.
    const scrapes = await Promise.all(cluster.replicas.map(async (r) => (await fetch(`${r.url}/metrics`)).text()));
    const total = (name: string) => scrapes.reduce((sum, text) => sum + (value(text, name, { provider: "local" }) ?? 0), 0);
    assert.equal(total("hodei_workers_started_total"), 24);
    assert.equal(total("hodei_job_queue_wait_seconds_count"), 24);
    const leaders = scrapes.map((text) => value(text, "hodei_leader"));
    assert.deepEqual([...leaders].sort(), [0, 1], "one leader");
    const leaderText = scrapes[leaders.indexOf(1)];
    const followerText = scrapes[leaders.indexOf(0)];
    assert.equal(value(leaderText, "hodei_queue_delayed", { provider: "local" }), 0, "the leader exports the queue gauges");
    assert.equal(value(leaderText, "hodei_workers", { provider: "local", state: "running" }), 0);
    assert.equal(value(followerText, "hodei_queue_delayed"), undefined, "the follower exports none");
    assert.equal(value(followerText, "hodei_workers"), undefined);
    for (let i = 0; i < ids.length; i++) {
      let text = "";
      for await (const entry of clients[(i + 1) % 2].getLogs({ jobId: ids[i] })) if (entry.stream === "stdout") text += Buffer.from(entry.data).toString();
      assert.equal(text, `ran job tag-${i}\n`, `job ${i}'s log`);
    }
    assert.deepEqual(await leftoverProcesses(cluster), [], "no worker process left");
  });

  it("shows, follows and cancels through one replica a job whose agent is connected to the other, promptly", async () => {
    // A heartbeat every 10 s: a cancel that reached the agent only at its heartbeat would take that long.
    cluster = await startReplicas(newDatabase, 2, { HODEI_HEARTBEAT_INTERVAL_MS: "10000" });
    const clients = cluster.replicas.map(api);
    const { job } = await clients[0].submitJob({ command: ["sh", "-c", "echo first; sleep 1; echo second; sleep 60"] });
    const id = job!.id;
    assert.ok(await eventually(() => dispatcherOf(cluster!.replicas, id) >= 0, 20_000), "dispatched");
    const holder = dispatcherOf(cluster.replicas, id);
    const other = clients[1 - holder];
    assert.equal((await other.getJob({ id })).state, "running", "visible through the other replica");
    // Follow through the replica that does not receive the logs.
    let followed = "";
    let followEnded = false;
    const following = (async () => {
      for await (const entry of other.getLogs({ jobId: id, follow: true })) followed += Buffer.from(entry.data).toString();
      followEnded = true;
    })();
    assert.ok(await eventually(() => followed.includes("second"), 10_000), `followed through the other replica: ${JSON.stringify(followed)}`);
    const { workers } = await other.listWorkers({});
    const worker = workers.find((w) => w.jobId === id)!;
    const jobProcesses = () => findMarkedProcesses(cluster!.clusterId).filter((p) => p.workerId === worker.id);
    assert.ok(jobProcesses().length > 0, "the job's processes run");
    const canceledAt = Date.now();
    const canceled = await other.cancelJob({ id });
    assert.equal(canceled.state, "canceled");
    const killed = await eventually(() => jobProcesses().length === 0, 8000, 10);
    const reachMs = Date.now() - canceledAt;
    assert.ok(killed, "the agent killed the job");
    console.log(`cancel through the other replica reached the agent and killed the job in ${reachMs} ms (heartbeat every 10000 ms)`);
    assert.ok(reachMs < 5000, `promptly: ${reachMs} ms, not at the next heartbeat`);
    assert.ok(await eventually(() => followEnded, 15_000), "the follower ended with the job");
    await following;
    assert.deepEqual(await leftoverProcesses(cluster), [], "no worker process left");
  });

  it("hands its agents over on graceful shutdown (SIGTERM): their jobs finish through the other replica, once", async () => {
    cluster = await startReplicas(newDatabase, 2);
    const clients = cluster.replicas.map(api);
    const file = outputFile();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { job } = await clients[i % 2].submitJob({ command: ["sh", "-c", `echo "$TAG" >> ${file}; sleep 3; echo done`], env: { TAG: `tag-${i}` } });
      ids.push(job!.id);
    }
    assert.ok(await eventually(() => ids.every((id) => dispatcherOf(cluster!.replicas, id) >= 0), 20_000), "all dispatched");
    const onFirst = ids.filter((id) => dispatcherOf(cluster!.replicas, id) === 0).length;
    assert.equal(await cluster.replicas[0].stop(), 0, "the replica stopped cleanly");
    cluster.balancer.backends.splice(0, 1);
    assert.ok(cluster.replicas[0].output.some((l) => l.includes('"server stopped"')));
    const survivor = clients[1];
    const states = await waitAllFinal([survivor], ids, 60_000);
    console.log(`graceful shutdown: ${onFirst} of ${ids.length} agents were on the stopped replica; ${JSON.stringify([...states.values()].map((s) => s.state))}`);
    assert.deepEqual(ids.filter((id) => states.get(id)?.state !== "succeeded"), []);
    assert.deepEqual(duplicates(appendedTags(file)), [], "no job ran twice");
    for (const id of ids) {
      let text = "";
      for await (const entry of survivor.getLogs({ jobId: id })) if (entry.stream === "stdout") text += Buffer.from(entry.data).toString();
      assert.equal(text, "done\n", "each job's whole output arrived");
    }
    assert.deepEqual(await leftoverProcesses(cluster), [], "no worker process left");
  });

  it("leaves no process of the cluster once its replicas stopped", async () => {
    cluster = await startReplicas(newDatabase, 2);
    const left = await stopCluster(cluster);
    cluster = undefined;
    assert.deepEqual(left, [], "stopping the replicas released every agent (nothing was left to kill)");
  });
}
