/**
 * Docker hello-world latency with a warm pool (HODEI_DOCKER_WARM_WORKERS): a server of its own,
 * whose idle containers are ready before each job is submitted; `echo hello` jobs one after the
 * other, client-observed submit -> succeeded and container removed, plus the timeline's phases.
 * bench/run.ts puts it under docker.warm; run alone, it also measures the bare container run
 * (create + start + wait + remove) and hello world without a pool, in the same conditions:
 *
 *   BENCH_RUNS=10 [BENCH_DOCKER_IMAGE=hodei-worker:TAG] npx tsx bench/docker-warm.ts
 *
 * No container is left behind: the server's cluster is checked empty (and cleaned) at the end.
 */
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import Dockerode from "dockerode";
import { JobService } from "../src/gen/hodei/v1/api_pb.js";
import { DEFAULT_WORKER_IMAGE } from "../src/core/worker-image.js";
import { LABELS } from "../src/providers/docker.js";
import { sendKey, startServerProcess } from "../test/e2e/harness.js";
import { phasesOf, waitDestroyed } from "./job-timeline.js";

const WARM_WORKERS = 2;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const round = (n: number) => Math.round(n * 10) / 10;
const summary = (values: number[]) => ({ p50: round(percentile(values, 50)), p95: round(percentile(values, 95)), min: round(Math.min(...values)), max: round(Math.max(...values)) });

async function idleCount(docker: Dockerode, clusterId: string): Promise<number> {
  const cs = await docker.listContainers({ filters: { label: [`${LABELS.clusterId}=${clusterId}`, `${LABELS.pool}=warm`] } });
  return cs.filter((c) => c.Names[0]?.startsWith("/hodei-warm-")).length;
}

/** Hello world on a server with `warmWorkers` idle containers; each job waits until the pool is full again. */
async function helloOnServer(docker: Dockerode, image: string, runs: number, warmWorkers: number) {
  const server = await startServerProcess({ HODEI_PROVIDERS: "docker", HODEI_DOCKER_IMAGE: image, HODEI_DOCKER_WARM_WORKERS: String(warmWorkers), HODEI_DOCKER_MAX_WORKERS: "8" });
  const client = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
  const latencies: number[] = [];
  const finalLatencies: number[] = [];
  const phases: Record<string, number[]> = { provision: [], register: [], dispatch: [], run: [], destroy: [] };
  try {
    const poolReady = async () => {
      for (let i = 0; warmWorkers > 0 && i < 600 && (await idleCount(docker, server.clusterId)) < warmWorkers; i++) await new Promise((r) => setTimeout(r, 50));
    };
    // Warm up: the first jobs pay for cold caches.
    for (let i = 0; i < 3; i++) {
      await poolReady();
      await waitDestroyed(client, (await client.submitJob({ command: ["echo", "warm"], provider: "docker" })).job!.id);
    }
    for (let i = 0; i < runs; i++) {
      // Back-to-back jobs faster than a refill would measure the pool's size, not its effect.
      await poolReady();
      const t0 = performance.now();
      const { job } = await client.submitJob({ command: ["echo", "hello"], provider: "docker" });
      const done = await waitDestroyed(client, job!.id, () => finalLatencies.push(performance.now() - t0));
      latencies.push(performance.now() - t0);
      if (done.state !== "succeeded") throw new Error(`docker job ${done.id} ended ${done.state}: ${done.reason}`);
      for (const [phase, value] of Object.entries(phasesOf(done.timeline))) phases[phase].push(value);
    }
  } finally {
    await server.stop();
    server.cleanup();
  }
  const left = await docker.listContainers({ all: true, filters: { label: [`${LABELS.clusterId}=${server.clusterId}`] } });
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
  return { hello_world_ms: summary(latencies), hello_world_final_ms: summary(finalLatencies), phases_p50_ms: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(percentile(v, 50))])), containers_left: left.length };
}

/** The docker.warm section of bench/run.ts: hello world with a warm pool, and its ratio to the section's baseline p50. */
export async function dockerWarmSection(docker: Dockerode, image: string, runs: number, baselineP50: number): Promise<Record<string, unknown>> {
  const warm = await helloOnServer(docker, image, runs, WARM_WORKERS);
  return { warm_workers: WARM_WORKERS, ...warm, ratio_p50: round(warm.hello_world_ms.p50 / baselineP50), target: "hello_world_ms p50 under 50 ms" };
}

/** create + start + wait + remove of a container of the image whose command exits at once. */
async function containerBaseline(docker: Dockerode, image: string, runs: number): Promise<number[]> {
  const times: number[] = [];
  const label = `hodei-bench-${randomUUID()}`;
  for (let i = 0; i < runs + 3; i++) {
    const t0 = performance.now();
    const container = await docker.createContainer({ name: `${label}-${i}`, Image: image, Entrypoint: [], Cmd: ["/bin/true"], Labels: { "io.hodei.bench-run": label }, HostConfig: { NetworkMode: "host" } });
    try {
      await container.start();
      await container.wait();
    } finally {
      await container.remove({ force: true, v: true });
    }
    if (i >= 3) times.push(performance.now() - t0);
  }
  return times;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const docker = new Dockerode({ socketPath: process.env.HODEI_DOCKER_SOCKET ?? "/var/run/docker.sock" });
  const image = process.env.BENCH_DOCKER_IMAGE ?? DEFAULT_WORKER_IMAGE;
  const runs = Number(process.env.BENCH_RUNS ?? 10);
  const base = summary(await containerBaseline(docker, image, runs));
  const cold = await helloOnServer(docker, image, runs, 0);
  const warm = await dockerWarmSection(docker, image, runs, base.p50);
  console.log(JSON.stringify({ image, runs, baseline_container_run_ms: base, cold: { ...cold, ratio_p50: round(cold.hello_world_ms.p50 / base.p50) }, warm }, null, 2));
}
