/**
 * `npm run bench`: latency and throughput of the local provider, and latency of the Docker and
 * Kubernetes providers,
 * each beside a baseline measured in the same run. Prints a JSON summary. Not a test: figures only,
 * no pass/fail.
 *
 * Every provider's latency part has the same keys: <baseline key> and hello_world_ms (p50, p95, min,
 * max), hello_world_final_ms, ratio_p50, ratio_p95 and ratio_p50_final against the baseline, target
 * (hello_world_ms p50 within 1.5x on local and Kubernetes, 1.3x on Docker), phases_p50_ms (provision, register, dispatch, run, destroy, from the job's timeline).
 *
 * local (top level of the JSON: provider, runs, ...):
 *   baseline      (baseline_node_spawn_ms) spawn the agent's Node binary with a script that exits at
 *                 once, wait for its exit
 *   hello world   submit `echo hello` -> job succeeded (hello_world_final_ms: seen as `hodei run` sees
 *                 it, the client's log follow ending with the job) and its worker destroyed
 *                 (hello_world_ms, by polling the job), client-observed
 *   throughput    (the "throughput" key, bench/throughput.ts) BENCH_JOBS (200) jobs submitted at once
 *                 -> all succeeded and destroyed, beside spawning and reaping the agent's Node process
 *                 as many times, 16 at once (the ratio)
 * logs (the "logs" key, bench/logs.ts): a 1,000,000-line job on local, ingested MB/s, every byte checked
 * docker (the "docker" key; {"skipped": ...} when no daemon answers):
 *   baseline      through dockerode: create + start + wait + remove a container of the worker image
 *                 (network host) whose command exits at once
 *   baseline key  baseline_container_run_ms
 *   hello world   submit `echo hello` with provider docker -> succeeded and its container removed
 *   warm          the same with a warm pool of 2 idle containers (bench/docker-warm.ts), and its ratio
 * kubernetes (the "kubernetes" key; against the API emulator, whose pods are Docker containers):
 *   baseline      through the Kubernetes API: create a pod of the worker image that exits at once,
 *                 wait for Succeeded, delete it, wait until it is gone
 *   baseline key  baseline_pod_run_ms
 *   hello world   submit `echo hello` with provider kubernetes -> succeeded and its pod deleted
 * verify (the "verify" key): `hodei verify --json` wall time for the seed's scenario (3 jobs on docker
 *   and 3 on kubernetes at once; the original took 18 s) and for all three providers.
 * history (the "history" key, bench/history.ts): the store's per-job statement cost and the
 *   submit-to-succeeded latency, with an empty database and with 200,000 finished jobs, and their ratios.
 *
 * control_plane (the "control_plane" key, bench/control-plane.ts): the control plane's own throughput,
 *   jobs/s through submit -> claim -> register -> dispatch -> result -> destroy with workers that cost
 *   nothing to start, where the time goes per phase, statements per job and what bounds it.
 *
 * cli (the "cli" key, bench/cli.ts): p50 of `hodei run -- true` as a whole process against the
 *   bench's local server, beside `node -e 0` in the same run (target: within 1.5x).
 *
 * BENCH_ONLY=history, control_plane, cli, throughput (the local hello world and throughput) or logs
 * runs that section alone (none needs a Docker daemon); BENCH_ONLY=docker (cold and warm) or
 * kubernetes runs that provider's section alone, on a server with all three providers.
 * BENCH_RUNS (default 40) sets the number of baseline and hello-world runs of every provider;
 * BENCH_JOBS (default 200) the throughput's jobs; BENCH_LOCAL_ONLY=1 skips Docker and Kubernetes
 * (and verify); BENCH_PROFILE=DIR writes a CPU profile of the server of BENCH_ONLY=throughput or logs.
 * Each section's own settings are in its file's header.
 * No container is left behind: the bench's own are labelled and removed, and the server's cluster is
 * checked empty (and cleaned) at the end.
 */
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import Dockerode from "dockerode";
import { JobService } from "../src/gen/hodei/v1/api_pb.js";
import { LABELS } from "../src/providers/docker.js";
import { startKubeEmulator } from "../test/fixtures/kube-emulator/index.js";
import { HODEI_BIN, sendKey, type ServerProcess, startServerProcess } from "../test/e2e/harness.js";
import { cliSection } from "./cli.js";
import { controlPlaneSection } from "./control-plane.js";
import { dockerWarmSection } from "./docker-warm.js";
import { historySection } from "./history.js";
import { phasesOf, waitDestroyed } from "./job-timeline.js";
import { logLimitForBench, logsSection } from "./logs.js";
import { throughputSection } from "./throughput.js";
import { DEFAULT_WORKER_IMAGE } from "../src/core/worker-image.js";
import { tempDir } from "../test/fixtures/temp-dir.js";

const execFileAsync = promisify(execFile);
const WORKER_ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
const HELLO_RUNS = Number(process.env.BENCH_RUNS ?? 40);
const THROUGHPUT_JOBS = Number(process.env.BENCH_JOBS ?? 200);
const DOCKER_SOCKET = process.env.HODEI_DOCKER_SOCKET ?? "/var/run/docker.sock";
const DOCKER_IMAGE = DEFAULT_WORKER_IMAGE;
/** Marks the bench's own baseline containers, so that they are all found and removed. */
const BENCH_LABEL = "io.hodei.bench-run";
const BENCH_RUN_ID = randomUUID();

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const round = (n: number) => Math.round(n * 10) / 10;
const summary = (values: number[]) => ({ p50: round(percentile(values, 50)), p95: round(percentile(values, 95)), min: round(Math.min(...values)), max: round(Math.max(...values)) });

/** Baseline and hello-world summaries, their ratios and the phase breakdown, under fixed keys. */
function latencyReport(baselineKey: string, base: number[], latencies: number[], phasesP50: Record<string, number>, finalLatencies: number[], targetRatio: number) {
  const baselineSummary = summary(base);
  const hello = summary(latencies);
  const final = finalLatencies.length > 0 ? summary(finalLatencies) : null;
  return {
    [baselineKey]: baselineSummary,
    hello_world_ms: hello,
    ...(final ? { hello_world_final_ms: final, ratio_p50_final: round(final.p50 / baselineSummary.p50) } : {}),
    ratio_p50: round(hello.p50 / baselineSummary.p50),
    ratio_p95: round(hello.p95 / baselineSummary.p95),
    target: `hello_world_ms p50 within ${targetRatio}x the baseline`,
    phases_p50_ms: phasesP50,
  };
}

async function baseline(runs: number): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "hodei-bench-"));
  const script = join(dir, "exit.cjs");
  writeFileSync(script, "process.exit(0);\n");
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      // The same environment a local worker gets (the server passes on only PATH, HOME and the like):
      // variables such as NODE_EXTRA_CA_CERTS would slow this baseline's start several times over.
      const child = spawn(process.execPath, [script], { stdio: "ignore", env: WORKER_ENV });
      child.once("error", reject);
      child.once("exit", () => resolve());
    });
    times.push(performance.now() - t0);
  }
  rmSync(dir, { recursive: true, force: true });
  return times;
}

type Client = ReturnType<typeof createClient<typeof JobService>>;


/** Runs `echo hello` jobs one after the other on a provider: client-observed latency and the timeline's phases. */
async function helloWorld(client: Client, provider: string, runs: number) {
  const latencies: number[] = [];
  const finalLatencies: number[] = [];
  const phases: Record<string, number[]> = { provision: [], register: [], dispatch: [], run: [], destroy: [] };
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const { job } = await client.submitJob({ command: ["echo", "hello"], provider });
    const done = await waitDestroyed(client, job!.id, () => finalLatencies.push(performance.now() - t0));
    latencies.push(performance.now() - t0);
    if (done.state !== "succeeded") throw new Error(`${provider} job ${done.id} ended ${done.state}: ${done.reason}`);
    for (const [phase, value] of Object.entries(phasesOf(done.timeline))) phases[phase].push(value);
  }
  const phasesP50 = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(percentile(v, 50))]));
  return { latencies, finalLatencies, phasesP50 };
}

// ---- docker ---------------------------------------------------------------------------------------

/** True when a Docker daemon answers on the socket within 2 s. */
async function dockerAnswers(docker: Dockerode): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 2000)));
  const ping = docker.ping().then(
    () => true,
    () => false,
  );
  const answers = await Promise.race([ping, timeout]);
  clearTimeout(timer);
  return answers;
}

/** The Docker baseline: create + start + wait + remove of a container that exits at once, as the daemon allows at best. */
async function dockerBaseline(docker: Dockerode, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const container = await docker.createContainer({
      name: `hodei-bench-${randomUUID()}`,
      Image: DOCKER_IMAGE,
      Entrypoint: [],
      Cmd: ["/bin/true"],
      Labels: { [BENCH_LABEL]: BENCH_RUN_ID },
      HostConfig: { NetworkMode: "host" },
    });
    try {
      await container.start();
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      if (StatusCode !== 0) throw new Error(`baseline container exited with ${StatusCode}`);
    } finally {
      await container.remove({ force: true, v: true });
    }
    times.push(performance.now() - t0);
  }
  return times;
}

/** Containers of this bench run and of the server's cluster that still exist. */
async function leftoverContainers(docker: Dockerode, clusterId: string): Promise<Dockerode.ContainerInfo[]> {
  const ours = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${BENCH_RUN_ID}`] } });
  const cluster = await docker.listContainers({ all: true, filters: { label: [`${LABELS.clusterId}=${clusterId}`] } });
  return [...ours, ...cluster];
}

async function removeContainers(docker: Dockerode, containers: Dockerode.ContainerInfo[]): Promise<void> {
  for (const c of containers) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
}

async function dockerSection(docker: Dockerode | null, client: Client, clusterId: string): Promise<Record<string, unknown>> {
  if (!docker) return { skipped: "no Docker daemon" };
  const image = await docker
    .getImage(DOCKER_IMAGE)
    .inspect()
    .catch(() => null);
  if (!image) return { skipped: `image ${DOCKER_IMAGE} missing: run "npx hodei image build"` };

  // Warm up: the first containers pay for cold caches (image layers, the agent's files).
  await dockerBaseline(docker, 3);
  for (let i = 0; i < 3; i++) await waitDestroyed(client, (await client.submitJob({ command: ["echo", "warm"], provider: "docker" })).job!.id);

  const base = await dockerBaseline(docker, HELLO_RUNS);
  const { latencies, finalLatencies, phasesP50 } = await helloWorld(client, "docker", HELLO_RUNS);

  // Every hello job was seen with its container removed; confirm with the daemon itself.
  let left: Dockerode.ContainerInfo[] = [];
  for (let i = 0; i < 50; i++) {
    left = await leftoverContainers(docker, clusterId);
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    runs: HELLO_RUNS,
    image: DOCKER_IMAGE,
    ...latencyReport("baseline_container_run_ms", base, latencies, phasesP50, finalLatencies, 1.3),
    containers_left: left.length,
    // The same jobs with a warm pool (a server of its own: HODEI_DOCKER_WARM_WORKERS), bench/docker-warm.ts.
    warm: await dockerWarmSection(docker, DOCKER_IMAGE, HELLO_RUNS, summary(base).p50),
  };
}

// ---- kubernetes (emulated) ---------------------------------------------------------------------------

/** Baseline through the same API: create a pod that exits at once, wait for Succeeded, delete it, wait until gone. */
async function kubernetesBaseline(core: k8s.CoreV1Api, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const name = `bench-${BENCH_RUN_ID.slice(0, 8)}-${i}`;
    const t0 = performance.now();
    await core.createNamespacedPod({
      namespace: "default",
      body: { metadata: { name }, spec: { restartPolicy: "Never", containers: [{ name: "c", image: DOCKER_IMAGE, command: ["/bin/true"] }] } },
    });
    for (;;) {
      const pod = await core.readNamespacedPod({ name, namespace: "default" });
      if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await core.deleteNamespacedPod({ name, namespace: "default", gracePeriodSeconds: 0 });
    for (;;) {
      try {
        await core.readNamespacedPod({ name, namespace: "default" });
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    times.push(performance.now() - t0);
  }
  return times;
}

async function kubernetesSection(core: k8s.CoreV1Api | null, client: Client): Promise<Record<string, unknown>> {
  if (!core) return { skipped: "no Docker daemon (the emulator runs pods on it)" };
  await kubernetesBaseline(core, 3);
  for (let i = 0; i < 3; i++) await waitDestroyed(client, (await client.submitJob({ command: ["echo", "warm"], provider: "kubernetes" })).job!.id);
  const base = await kubernetesBaseline(core, HELLO_RUNS);
  const { latencies, finalLatencies, phasesP50 } = await helloWorld(client, "kubernetes", HELLO_RUNS);
  const pods = await core.listNamespacedPod({ namespace: "default" });
  return {
    runs: HELLO_RUNS,
    api: "emulated (test/fixtures/kube-emulator: pods run as Docker containers)",
    ...latencyReport("baseline_pod_run_ms", base, latencies, phasesP50, finalLatencies, 1.5),
    pods_left: pods.items.length,
  };
}

/** `hodei verify --json` for the named providers: the seed's scenario (3 jobs per provider at once). */
async function verifyRun(server: { url: string; dataDir: string }, providers: string): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const { stdout } = await execFileAsync(process.execPath, [HODEI_BIN, "verify", "--json", "--providers", providers], {
    // HODEI_DATA_DIR: the CLI finds the server's admin key there.
    env: { ...WORKER_ENV, HODEI_SERVER_URL: server.url, HODEI_DATA_DIR: server.dataDir },
    maxBuffer: 64 * 1024 * 1024,
  }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? "{}" }));
  const report = JSON.parse(stdout) as { ok?: boolean; totalMs?: number; jobs?: unknown[] };
  return { providers, ok: report.ok ?? false, jobs: report.jobs?.length ?? 0, total_ms: report.totalMs ?? null, wall_ms: round(performance.now() - t0) };
}

/** The local provider's part: hello world beside the Node spawn baseline, and throughput beside spawning agents 16 at once. */
async function localSection(client: Client, server: { url: string; process: { pid?: number } }): Promise<Record<string, unknown>> {
  // Warm up: first spawns pay for cold caches.
  for (let i = 0; i < 3; i++) await waitDestroyed(client, (await client.submitJob({ command: ["echo", "warm"] })).job!.id);
  await baseline(3);
  const base = await baseline(HELLO_RUNS);
  const { latencies, finalLatencies, phasesP50 } = await helloWorld(client, "local", HELLO_RUNS);
  return {
    provider: "local",
    runs: HELLO_RUNS,
    ...latencyReport("baseline_node_spawn_ms", base, latencies, phasesP50, finalLatencies, 1.5),
    throughput: await throughputSection(client, THROUGHPUT_JOBS, { ...WORKER_ENV, HODEI_SERVER_URL: server.url }, server.process.pid!),
  };
}

/** A server with the local provider only (BENCH_ONLY=throughput or logs). */
async function localOnly(section: (client: Client, server: ServerProcess) => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
  const server = await startServerProcess({
    HODEI_LOCAL_MAX_WORKERS: "16",
    ...(process.env.HODEI_LOCAL_WARM_WORKERS ? { HODEI_LOCAL_WARM_WORKERS: process.env.HODEI_LOCAL_WARM_WORKERS } : {}),
    HODEI_LOG_LIMIT_BYTES: String(logLimitForBench()),
    HODEI_PROVIDERS: "local",
    // BENCH_PROFILE=DIR: a CPU profile of the server, written there when it stops.
  }, { nodeArgs: process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [] });
  const client = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
  try {
    return await section(client, server);
  } finally {
    await server.stop();
    server.cleanup();
  }
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  if (only === "control_plane") {
    console.log(JSON.stringify({ control_plane: await controlPlaneSection() }, null, 2));
    return;
  }
  if (only === "cli") {
    console.log(JSON.stringify({ cli: await cliSection() }, null, 2));
    return;
  }
  if (only === "throughput") {
    console.log(JSON.stringify(await localOnly(localSection), null, 2));
    return;
  }
  if (only === "logs") {
    console.log(JSON.stringify({ logs: await localOnly((client, server) => logsSection(client, server)) }, null, 2));
    return;
  }
  if (only === "history") {
    console.log(JSON.stringify({ history: await historySection() }, null, 2));
    return;
  }
  if (only && only !== "docker" && only !== "kubernetes") {
    throw new Error(`BENCH_ONLY=${only}: only "history", "control_plane", "cli", "throughput", "logs", "docker" or "kubernetes" can run alone`);
  }
  // First, while nothing else runs: their own servers and databases.
  const history = only ? undefined : await historySection();
  const controlPlane = only ? undefined : await controlPlaneSection();
  const docker = new Dockerode({ socketPath: DOCKER_SOCKET });
  // BENCH_LOCAL_ONLY=1 measures the local provider alone (quick iterations).
  const daemon = process.env.BENCH_LOCAL_ONLY ? false : await dockerAnswers(docker);
  if (only && !daemon) throw new Error(`BENCH_ONLY=${only} needs a Docker daemon at ${DOCKER_SOCKET}`);
  const emulator = daemon ? await startKubeEmulator({ port: 0, docker, clusterLabel: `bench-${BENCH_RUN_ID.slice(0, 8)}` }) : null;
  let core: k8s.CoreV1Api | null = null;
  let kubeconfig = "";
  if (emulator) {
    kubeconfig = join(tempDir("hodei-bench-kube-"), "kubeconfig");
    emulator.writeKubeconfig(kubeconfig);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
  }
  const server = await startServerProcess({
    HODEI_LOCAL_MAX_WORKERS: "16",
    ...(process.env.HODEI_LOCAL_WARM_WORKERS ? { HODEI_LOCAL_WARM_WORKERS: process.env.HODEI_LOCAL_WARM_WORKERS } : {}),
    HODEI_PROVIDERS: daemon ? "local,docker,kubernetes" : "local",
    HODEI_DEFAULT_PROVIDER: "local",
    HODEI_LOG_LIMIT_BYTES: String(logLimitForBench()),
    HODEI_DOCKER_SOCKET: DOCKER_SOCKET,
    HODEI_DOCKER_IMAGE: DOCKER_IMAGE,
    ...(kubeconfig ? { HODEI_K8S_KUBECONFIG: kubeconfig } : {}),
  });
  const client = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
  try {
    if (only === "docker") {
      console.log(JSON.stringify({ docker: await dockerSection(docker, client, server.clusterId) }, null, 2));
      return;
    }
    if (only === "kubernetes") {
      console.log(JSON.stringify({ kubernetes: await kubernetesSection(core, client) }, null, 2));
      return;
    }
    const result = {
      ...(await localSection(client, server)),
      logs: await logsSection(client, server),
      docker: await dockerSection(daemon ? docker : null, client, server.clusterId),
      kubernetes: await kubernetesSection(core, client),
      verify: daemon
        ? { seed_scenario: await verifyRun(server, "docker,kubernetes"), all_providers: await verifyRun(server, "local,docker,kubernetes"), original_seconds: 18 }
        : { skipped: "no Docker daemon" },
      history,
      control_plane: controlPlane,
      cli: await cliSection(server),
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await server.stop();
    server.cleanup();
    await emulator?.stop();
    if (daemon) {
      // Whatever an interrupted run left (its jobs' containers, a baseline container) goes too.
      const left = await leftoverContainers(docker, server.clusterId).catch(() => []);
      if (left.length > 0) console.error(`bench: removing ${left.length} container(s) left behind`);
      await removeContainers(docker, left);
    }
  }
}

await main();
