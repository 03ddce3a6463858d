/**
 * The local provider's throughput beside what this machine can do at best, measured in the same run
 * (the machine may be shared: compare the ratio, not the raw figures).
 *
 *   baseline    spawn-and-reap of the agent's own Node process, started as a local worker is (`node
 *               --snapshot-blob dist/agent.blob` when this node built it, else `node dist/agent.cjs`),
 *               with its stdin closed (it boots, sees no assignment and exits) BENCH_JOBS times,
 *               16 at once (HODEI_LOCAL_MAX_WORKERS): the cost floor of one local worker. Measured
 *               before and after the jobs; the mean of the two is the baseline.
 *   throughput  BENCH_JOBS `echo` jobs submitted at once to a server with 16 local workers at most:
 *               seconds until every job is final (succeeded) and until every worker is destroyed;
 *               jobs_per_second counts to destroyed (the worker's slot is free then), and ratio is
 *               jobs_per_second / baseline_jobs_per_second (target: at least 0.5).
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { createClient } from "@connectrpc/connect";
import type { Job, JobService } from "../src/gen/hodei/v1/api_pb.js";
import { localSnapshotFor } from "../src/providers/agent-runtime.js";
import { ROOT } from "../test/e2e/harness.js";
import { ENDED } from "./job-timeline.js";

type Client = ReturnType<typeof createClient<typeof JobService>>;

export const LOCAL_CONCURRENCY = 16;
const AGENT_PATH = join(ROOT, "dist", "agent.cjs");
/** How the server starts a local agent (src/server/main.ts): from the build's snapshot when this node built it. */
const SNAPSHOT = localSnapshotFor(AGENT_PATH, process.execPath);
const AGENT_ARGS = SNAPSHOT ? ["--snapshot-blob", SNAPSHOT] : [AGENT_PATH];
const round = (n: number) => Math.round(n * 10) / 10;

/** CPU time of a process itself and of its reaped children (agents, their shells), ms, from /proc. */
export function cpuMs(pid: number | "self"): { self: number; children: number } {
  const raw = readFileSync(`/proc/${pid}/stat`, "latin1");
  const f = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
  const tick = 10; // USER_HZ 100
  return { self: (Number(f[11]) + Number(f[12])) * tick, children: (Number(f[13]) + Number(f[14])) * tick };
}

/**
 * CPU of a server's local workers (agents and their jobs), ms, counted once they are reaped: they are
 * the children of the server's agent launcher (src/providers/local-launcher.ts), whose own exit
 * comes only with the server's; what the server reaped itself is added (none, with a launcher).
 */
export function workersCpuMs(serverPid: number): number {
  const launcher = childNamed(serverPid, "hodei-launcher");
  return cpuMs(serverPid).children + (launcher ? cpuMs(launcher).children : 0);
}

/** The pid of a child of `parentPid` whose command name is `comm`, from /proc. */
function childNamed(parentPid: number, comm: string): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const raw = readFileSync(`/proc/${name}/stat`, "latin1");
      const fields = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === parentPid && raw.slice(raw.indexOf("(") + 1, raw.lastIndexOf(")")) === comm) return Number(name);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

/**
 * Spawns the agent (AGENT_ARGS) `total` times, `concurrency` at once, each with stdin closed (so it
 * exits as soon as it has booted), and waits for every exit: processes per second.
 */
export async function spawnBaseline(total: number, concurrency: number, env: Record<string, string>): Promise<{ seconds: number; jobs_per_second: number }> {
  let started = 0;
  let exited = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const next = () => {
      if (started >= total) {
        if (exited === total) resolve();
        return;
      }
      started++;
      const child = spawn(process.execPath, AGENT_ARGS, { stdio: ["ignore", "ignore", "ignore"], env });
      child.once("error", reject);
      child.once("exit", (code) => {
        if (code !== 0) return reject(new Error(`baseline agent exited with ${code}`));
        exited++;
        next();
      });
    };
    for (let i = 0; i < concurrency; i++) next();
  });
  const seconds = (performance.now() - t0) / 1000;
  return { seconds: round(seconds), jobs_per_second: round(total / seconds) };
}

/** `jobs` echo jobs submitted at once; the time until all are final and until all are destroyed. */
export async function throughputRun(client: Client, jobs: number): Promise<{ final_seconds: number; destroyed_seconds: number; failed: number }> {
  const t0 = performance.now();
  const ids = await Promise.all(Array.from({ length: jobs }, async (_, i) => (await client.submitJob({ command: ["echo", `job ${i}`] })).job!.id));
  const wanted = new Set(ids);
  let finalS = NaN;
  let finished: Job[] = [];
  for (;;) {
    const { jobs: page } = await client.listJobs({ limit: 500 });
    const mine = page.filter((j) => wanted.has(j.id));
    const isAllFinal = mine.length === wanted.size && mine.every((j) => ENDED.has(j.state));
    if (isAllFinal && Number.isNaN(finalS)) finalS = (performance.now() - t0) / 1000;
    if (isAllFinal && mine.every((j) => j.timeline?.destroyed)) {
      finished = mine;
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const destroyedS = (performance.now() - t0) / 1000;
  return { final_seconds: round(finalS * 100) / 100, destroyed_seconds: round(destroyedS * 100) / 100, failed: finished.filter((j) => j.state !== "succeeded").length };
}

/** Baseline, jobs, baseline again: the `throughput` key of the local section. */
export async function throughputSection(client: Client, jobs: number, agentEnv: Record<string, string>, serverPid: number): Promise<Record<string, unknown>> {
  const bench0 = cpuMs("self");
  const before = await spawnBaseline(jobs, LOCAL_CONCURRENCY, agentEnv);
  const bench1 = cpuMs("self");
  const server0 = cpuMs(serverPid);
  const workers0 = workersCpuMs(serverPid);
  const run = await throughputRun(client, jobs);
  const server1 = cpuMs(serverPid);
  const workers1 = workersCpuMs(serverPid);
  const after = await spawnBaseline(jobs, LOCAL_CONCURRENCY, agentEnv);
  const baseline = (before.jobs_per_second + after.jobs_per_second) / 2;
  const jobsPerSecond = jobs / run.destroyed_seconds;
  return {
    jobs,
    concurrency: LOCAL_CONCURRENCY,
    seconds: run.destroyed_seconds,
    seconds_to_final: run.final_seconds,
    jobs_per_second: round(jobsPerSecond),
    jobs_per_second_to_final: round(jobs / run.final_seconds),
    failed: run.failed,
    baseline_jobs_per_second: round(baseline),
    baseline_runs_jobs_per_second: [before.jobs_per_second, after.jobs_per_second],
    ratio: Math.round((jobsPerSecond / baseline) * 100) / 100,
    // Where the CPU goes: the server's own, its workers' (agents and their jobs, counted once reaped), and one baseline spawn.
    cpu_ms_per_job: {
      server: round((server1.self - server0.self) / jobs),
      workers: round((workers1 - workers0) / jobs),
      baseline_spawn: round((bench1.children - bench0.children) / jobs),
    },
    target: "ratio at least 0.5: jobs/s within 2x of spawning and reaping the agent's Node process, 16 at once",
  };
}
