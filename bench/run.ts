/**
 * `npm run bench`: latency and throughput of the local provider, beside a baseline measured in the
 * same run. Prints a JSON summary. Not a test: figures only, no pass/fail.
 *
 *   baseline      spawn the agent's Node binary with a script that exits at once, wait for its exit
 *   hello world   submit `echo hello` -> job succeeded and its worker destroyed (client-observed)
 *   throughput    200 jobs submitted at once -> all succeeded and destroyed
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type Job, JobService } from "../src/gen/hodei/v1/api_pb.js";
import { startServerProcess } from "../test/e2e/harness.js";

const WORKER_ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
const HELLO_RUNS = Number(process.env.BENCH_RUNS ?? 40);
const THROUGHPUT_JOBS = Number(process.env.BENCH_JOBS ?? 200);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const round = (n: number) => Math.round(n * 10) / 10;
const summary = (values: number[]) => ({ p50: round(percentile(values, 50)), p95: round(percentile(values, 95)), min: round(Math.min(...values)), max: round(Math.max(...values)) });

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

async function waitDestroyed(client: Client, id: string): Promise<Job> {
  for (;;) {
    const job = await client.getJob({ id });
    if (job.timeline?.destroyed) return job;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ms = (t: Job["timeline"], key: "queued" | "provisioned" | "registered" | "started" | "finished" | "destroyed") => {
  const value = t?.[key];
  return value ? timestampMs(value) : NaN;
};

async function main(): Promise<void> {
  const server = await startServerProcess({ HODEI_LOCAL_MAX_WORKERS: "16" });
  const client = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  try {
    // Warm up: first spawns pay for cold caches.
    for (let i = 0; i < 3; i++) await waitDestroyed(client, (await client.submitJob({ command: ["echo", "warm"] })).job!.id);
    await baseline(3);

    const base = await baseline(HELLO_RUNS);
    const latencies: number[] = [];
    const phases: Record<string, number[]> = { provision: [], register: [], dispatch: [], run: [], destroy: [] };
    for (let i = 0; i < HELLO_RUNS; i++) {
      const t0 = performance.now();
      const { job } = await client.submitJob({ command: ["echo", "hello"] });
      const done = await waitDestroyed(client, job!.id);
      latencies.push(performance.now() - t0);
      if (done.state !== "succeeded") throw new Error(`job ${done.id} ended ${done.state}: ${done.reason}`);
      const t = done.timeline;
      phases.provision.push(ms(t, "provisioned") - ms(t, "queued"));
      phases.register.push(ms(t, "registered") - ms(t, "provisioned"));
      phases.dispatch.push(ms(t, "started") - ms(t, "registered"));
      phases.run.push(ms(t, "finished") - ms(t, "started"));
      phases.destroy.push(ms(t, "destroyed") - ms(t, "finished"));
    }

    const t0 = performance.now();
    const ids = await Promise.all(Array.from({ length: THROUGHPUT_JOBS }, async (_, i) => (await client.submitJob({ command: ["echo", `job ${i}`] })).job!.id));
    const finished = await waitAllDestroyed(client, new Set(ids));
    const elapsedS = (performance.now() - t0) / 1000;
    const failed = finished.filter((j) => j.state !== "succeeded").length;

    const hello = summary(latencies);
    const baselineSummary = summary(base);
    const result = {
      provider: "local",
      runs: HELLO_RUNS,
      baseline_node_spawn_ms: baselineSummary,
      hello_world_ms: hello,
      ratio_p50: round(hello.p50 / baselineSummary.p50),
      ratio_p95: round(hello.p95 / baselineSummary.p95),
      target: "p50 within 2x the baseline",
      phases_p50_ms: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(percentile(v, 50))])),
      throughput: { jobs: THROUGHPUT_JOBS, seconds: round(elapsedS), jobs_per_second: round(THROUGHPUT_JOBS / elapsedS), failed },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await server.stop();
  }
}

/** One ListJobs call every 50 ms, until every job of `ids` has its worker destroyed. */
async function waitAllDestroyed(client: Client, ids: Set<string>): Promise<Job[]> {
  for (;;) {
    const { jobs } = await client.listJobs({ limit: 500 });
    const mine = jobs.filter((j) => ids.has(j.id));
    if (mine.length === ids.size && mine.every((j) => j.timeline?.destroyed)) return mine;
    await new Promise((r) => setTimeout(r, 50));
  }
}

await main();
