/**
 * The `control_plane` section of `npm run bench` (alone: BENCH_ONLY=control_plane): the control
 * plane's own throughput. Every job goes the whole way, submit -> claim -> worker row + OTP token ->
 * register -> dispatch (RunJob) -> one log chunk + result -> destroy, through the real server (its
 * store, reconciler, Connect services and listener) in a child process per replica
 * (bench/control-plane-server.ts), with workers that cost nothing to start: the replica's `bench`
 * provider hands each OTP token to an agent already running in this process, which uses the
 * agent's own gRPC client (connect-node's gRPC transport, WorkerService) over real loopback HTTP/2
 * connections. The agents and the submitting client run here, so the replica process's CPU is the
 * control plane's alone.
 *
 * Printed, per configuration:
 *   jobs_per_second        measured jobs / (first submit -> last worker stopped), BENCH_CP_INFLIGHT
 *                          jobs kept in flight (closed loop: a job is submitted when one succeeds)
 *   latency_ms             submit -> succeeded (the result acknowledged, so committed), p50 / p95
 *   phases_ms              p50 / p95 of each step of a job (times taken in both processes):
 *                          submit (SubmitJob call, client-seen), submit_to_claimed (submit sent -> the
 *                          provider asked to start: the insert, a pass, the claim), provisioning_write
 *                          (provider_resource_id recorded), handoff (token to the agent, IPC), register
 *                          (the stream's Register answered, as the agent registers), dispatch (answer ->
 *                          RunJob: 0 when the job came in the answer, as it does), result_write (log chunk
 *                          + result -> result acknowledged), result_to_destroyed (result sent -> the
 *                          provider asked to stop: a pass, the destroy)
 *   statements_per_job     database statements per job, total and by kind (Kysely's log hook),
 *                          and the database's time per job (summed statement times)
 *   server                 the replica processes' CPU per job (and jobs per CPU-second: what a replica
 *                          with a core of its own would do), their share of one core, their event-loop
 *                          utilisation, and the share of their busy time spent in database statements
 *   database_server        `postgres` configurations on a cluster this section started: the CPU per job
 *                          of the PostgreSQL processes, and with the replicas' (the machine's cost per job)
 *   bound                  what limits the figure, read from the above
 *   unloaded               the same phases with one job in flight (BENCH_CP_UNLOADED_JOBS jobs)
 *
 *   protocol_floor         the `floor` configuration's server CPU per job (the same calls answered by
 *                          a replica that does nothing else: bench/control-plane-floor.ts), and each
 *                          configuration's CPU per job over it (cpu_ratio_to_floor)
 *
 * Configurations (BENCH_CP_CONFIGS, ";"-separated; default "floor,1;sqlite,1;sqlite,2;postgres,1;postgres,2"):
 * `<database>,<replicas>`, where database is `floor` (no database: the protocol's floor), `sqlite` (a fresh temporary file), `postgres` (a new
 * database per run on HODEI_TEST_POSTGRES_URL's server, or else on a throwaway PostgreSQL 15 cluster
 * this section starts and removes, test/fixtures/postgres.ts; without either the configuration is
 * skipped, and says so) or a database URL (postgres://...: it must be empty), and replicas the
 * number of server processes on it; jobs are submitted to them in turn and each replica's agents
 * register with it. Each configuration runs BENCH_CP_RUNS times (default 1), and the spread is
 * printed. The machine may be shared: each run prints the 1-minute load average read just before
 * it, beside the server's CPU per job (which contention changes far less than jobs/s).
 * BENCH_CP_JOBS (default 3000), BENCH_CP_WARMUP_JOBS (300), BENCH_CP_INFLIGHT (64),
 * BENCH_CP_MAX_WORKERS (128: the bench provider's capacity per replica), BENCH_CP_CONNECTIONS
 * (8: agent HTTP/2 connections per replica) change the sizes. BENCH_CP_PROFILE=DIR writes a CPU
 * profile of each replica there.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { skipWithoutPostgres, startPostgres, type TestPostgres } from "../test/fixtures/postgres.js";
import { at, isRetryable, Replica, runAgent, sleep, type StatsMessage, type Trace } from "./control-plane-replica.js";

const JOBS = Number(process.env.BENCH_CP_JOBS ?? 3000);
const WARMUP_JOBS = Number(process.env.BENCH_CP_WARMUP_JOBS ?? 300);
const UNLOADED_JOBS = Number(process.env.BENCH_CP_UNLOADED_JOBS ?? 200);
const INFLIGHT = Number(process.env.BENCH_CP_INFLIGHT ?? 64);
const MAX_WORKERS = Number(process.env.BENCH_CP_MAX_WORKERS ?? 128);
const CONNECTIONS = Number(process.env.BENCH_CP_CONNECTIONS ?? 8);
const RUNS = Number(process.env.BENCH_CP_RUNS ?? 1);
const CONFIGS = (process.env.BENCH_CP_CONFIGS ?? "floor,1;sqlite,1;sqlite,2;postgres,1;postgres,2").split(";").filter(Boolean);
/** The replicas' sources, bundled as dist/ is (scripts/build.mjs), so replicas run the code `hodei server` runs, without tsx. */
const SOURCES = { server: "control-plane-server", floor: "control-plane-floor" };
const scriptOf = (name: string) => join(import.meta.dirname, "..", "dist", "bench", `${name}.js`);

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const p50p95 = (values: number[]) => ({ p50: round(percentile(values, 50), 2), p95: round(percentile(values, 95), 2) });


/** Runs `jobs` jobs with `inflight` of them in flight at a time, spread over the replicas; returns their traces and the wall time. */
async function drive(replicas: Replica[], jobs: number, inflight: number, traces: Map<string, Trace>, succeeded: Map<string, () => void>, stopped: Map<string, () => void>) {
  let submitted = 0;
  const t0 = at();
  const mine: Trace[] = [];
  const pending: Promise<void>[] = [];
  async function loop(lane: number): Promise<void> {
    while (submitted < jobs) {
      const i = submitted++;
      const replica = replicas[(lane + i) % replicas.length];
      const trace: Trace = { submitStart: at() };
      mine.push(trace);
      // Unavailable (SQLite's write lock held by the other replica past its wait) stored nothing: retried.
      let job;
      for (let delayMs = 10; ; delayMs *= 2) {
        try {
          ({ job } = await replica.api.submitJob({ command: ["echo", "hello"] }, { timeoutMs: 30_000 }));
          break;
        } catch (err) {
          if (!isRetryable(err) || delayMs > 5000 || replica.child.exitCode !== null) throw err;
          trace.retries = (trace.retries ?? 0) + 1;
          await sleep(delayMs);
        }
      }
      trace.submitEnd = at();
      traces.set(job!.id, trace);
      const wasStopped = new Promise<void>((resolve) => stopped.set(job!.id, resolve));
      pending.push(wasStopped);
      // A job that ended some other way shows in the replica's log; the bench would then wait forever.
      await Promise.race([
        new Promise<void>((resolve) => succeeded.set(job!.id, resolve)),
        new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`job ${job!.id} did not succeed within 30 s: ${trace.failed ?? "see the replica's log"}`)), 30_000).unref()),
      ]);
    }
  }
  await Promise.all(Array.from({ length: inflight }, (_, lane) => loop(lane)));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(pending),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${pending.length} jobs succeeded but not all their workers were stopped within 30 s`)), 30_000))),
  ]).finally(() => clearTimeout(timer));
  const wallMs = Math.max(...mine.map((t) => t.stoppedAt ?? 0)) - t0;
  return { mine, wallMs };
}

/**
 * Each step of a job, in order from the submit. The submit's answer may leave after the claim (the
 * pass it nudges can run first), so the claim counts from the submit's start, and the destroy from
 * the result's sending (its acknowledgement and the destroy race). Times taken in two processes
 * agree within about a millisecond.
 */
function phases(traces: Trace[]) {
  const pick = (f: (t: Trace) => number) => p50p95(traces.map(f).filter((n) => Number.isFinite(n)));
  return {
    submit: pick((t) => t.submitEnd! - t.submitStart),
    submit_to_claimed: pick((t) => t.claimedAt! - t.submitStart),
    provisioning_write: pick((t) => t.provisionedAt! - t.claimedAt!),
    handoff: pick((t) => t.tokenAt! - t.provisionedAt!),
    register: pick((t) => t.registeredAt! - t.tokenAt!),
    dispatch: pick((t) => t.runAt! - t.registeredAt!),
    result_write: pick((t) => t.resultAckAt! - t.runAt!),
    result_to_destroyed: pick((t) => t.stoppedAt! - t.runAt!),
  };
}

function sumStats(list: StatsMessage[]) {
  const statements: Record<string, { count: number; ms: number }> = {};
  let cpuUs = 0;
  let activeMs = 0;
  let idleMs = 0;
  for (const s of list) {
    cpuUs += s.cpu.user + s.cpu.system;
    activeMs += s.elu.active;
    idleMs += s.elu.idle;
    for (const [kind, v] of Object.entries(s.statements)) {
      const e = (statements[kind] ??= { count: 0, ms: 0 });
      e.count += v.count;
      e.ms += v.ms;
    }
  }
  return { cpuUs, activeMs, idleMs, statements };
}

/** Runs one configuration once: starts its replicas, warms up, measures, stops them. */
/** CPU time (ms) used so far by these processes (a PostgreSQL cluster's server processes), from /proc; 0 for one that has gone. */
function processesCpuMs(pids: number[]): Map<number, number> {
  const ticksPerSecond = 100; // USER_HZ on Linux
  const cpu = new Map<number, number>();
  for (const pid of pids) {
    try {
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      cpu.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond);
    } catch {
      // It ended meanwhile.
    }
  }
  return cpu;
}

/**
 * `databaseProcesses`: the pids of the PostgreSQL cluster the section started, whose CPU is
 * measured too (on SQLite the database runs inside the replicas, so their CPU includes it).
 */
async function runConfig(database: string, replicaCount: number, databaseUrlOverride?: string, databaseProcesses?: () => number[]) {
  const loadBefore = round(loadavg()[0], 2);
  console.error(`control_plane: ${database}, ${replicaCount} replica(s), load average ${loadBefore} before the run`);
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "hodei-bench-cp-"));
    dirs.push(d);
    return d;
  };
  const isFloor = database === "floor";
  const databaseUrl = databaseUrlOverride ?? (database === "sqlite" || isFloor ? `sqlite:${join(tempDir(), "hodei.db")}` : database);
  const replicaOptions = { script: scriptOf(isFloor ? SOURCES.floor : SOURCES.server), maxWorkers: MAX_WORKERS, connections: CONNECTIONS };
  const traces = new Map<string, Trace>();
  const succeeded = new Map<string, () => void>();
  const stopped = new Map<string, () => void>();
  const replicas: Replica[] = [];
  const logFiles: string[] = [];
  const onMessage = (replicaIndex: () => Replica) => (m: Record<string, unknown>) => {
    if (m.type === "token") {
      const trace = traces.get(m.jobId as string);
      // The submit's answer may still be on its way: the trace is keyed once it arrives.
      const begin = () => {
        const t = traces.get(m.jobId as string)!;
        t.claimedAt = m.claimedAt as number;
        t.provisionedAt = m.provisionedAt as number;
        t.tokenAt = at();
        const jobId = m.jobId as string;
        runAgent(replicaIndex().agentClient(), m.otpToken as string, t, () => {
          succeeded.get(jobId)?.();
          succeeded.delete(jobId);
        }).catch((err: Error) => (t.failed = err.message));
      };
      if (trace) begin();
      else setImmediate(function retry() {
        if (traces.has(m.jobId as string)) begin();
        else setTimeout(retry, 1);
      });
    } else if (m.type === "stopped") {
      const jobId = m.jobId as string;
      const mark = () => {
        const t = traces.get(jobId);
        if (!t) return void setTimeout(mark, 1);
        t.stoppedAt = m.at as number;
        stopped.get(jobId)?.();
        stopped.delete(jobId);
      };
      mark();
    }
  };
  try {
    for (let i = 0; i < replicaCount; i++) {
      const dir = tempDir();
      const logFile = join(dir, "server.log");
      logFiles.push(logFile);
      const index = i;
      // Replicas start one after the other: the first creates the database (migrations).
      replicas.push(await Replica.start(replicaOptions, databaseUrl, dir, logFile, onMessage(() => replicas[index]), replicas[0]?.adminKey));
    }
    await drive(replicas, WARMUP_JOBS, INFLIGHT, traces, succeeded, stopped);
    const unloaded = await drive(replicas, UNLOADED_JOBS, 1, traces, succeeded, stopped);
    const before = await Promise.all(replicas.map((r) => r.stats()));
    const dbCpuBefore = databaseProcesses ? processesCpuMs(databaseProcesses()) : null;
    const cpuBefore = process.cpuUsage();
    const { mine, wallMs } = await drive(replicas, JOBS, INFLIGHT, traces, succeeded, stopped);
    const cpuAfter = process.cpuUsage(cpuBefore);
    const after = await Promise.all(replicas.map((r) => r.stats()));
    // Backends that started during the run count from zero; one that ended during it is missed (the pool keeps its connections).
    const dbCpuMs = dbCpuBefore ? [...processesCpuMs(databaseProcesses!()).entries()].reduce((sum, [pid, ms]) => sum + ms - (dbCpuBefore.get(pid) ?? 0), 0) : null;
    const b = sumStats(before);
    const a = sumStats(after);
    const cpuMs = (a.cpuUs - b.cpuUs) / 1000;
    const activeMs = a.activeMs - b.activeMs;
    const idleMs = a.idleMs - b.idleMs;
    const byKind: Record<string, { count: number; ms: number }> = {};
    let count = 0;
    let dbMs = 0;
    for (const [kind, v] of Object.entries(a.statements)) {
      const c = v.count - (b.statements[kind]?.count ?? 0);
      const ms = v.ms - (b.statements[kind]?.ms ?? 0);
      if (c === 0) continue;
      byKind[kind] = { count: round(c / JOBS, 2), ms: round(ms / JOBS, 3) };
      count += c;
      dbMs += ms;
    }
    const failed = mine.filter((t) => t.failed).length;
    const agentRetries = mine.reduce((n, t) => n + (t.retries ?? 0), 0);
    const serverCoreShare = cpuMs / wallMs / replicaCount;
    // Of the time the server's event loop was busy (statement times are wall times: on a shared
    // machine they include waiting for a core, so they are compared with busy time, not CPU time).
    const dbShare = dbMs / activeMs;
    const loadGenCoreShare = (cpuAfter.user + cpuAfter.system) / 1000 / wallMs;
    const warnings = logFiles.reduce((n, f) => n + readFileSync(f, "utf8").split("\n").filter((l) => /"level":(40|50|60)/.test(l)).length, 0);
    return {
      database: isFloor ? "none: the protocol's floor (bench/control-plane-floor.ts)" : database === "sqlite" ? "sqlite (temporary file)" : database === "postgres" ? "postgres (a new database)" : database.replace(/:\/\/[^@]*@/, "://***@"),
      load_average_1m_before: loadBefore,
      replicas: replicaCount,
      jobs: JOBS,
      inflight: INFLIGHT,
      failed,
      agent_retries: agentRetries,
      jobs_per_second: round(JOBS / (wallMs / 1000)),
      latency_ms: p50p95(mine.map((t) => t.resultAckAt! - t.submitStart)),
      phases_ms: phases(mine),
      statements_per_job: {
        total: round(count / JOBS, 2),
        db_ms_per_job: round(dbMs / JOBS, 3),
        // Per job: how many of each kind, and their summed time (ms).
        by_kind: Object.fromEntries(Object.entries(byKind).sort((x, y) => y[1].count - x[1].count)),
      },
      server: {
        cpu_ms_per_job: round(cpuMs / JOBS, 3),
        // What one replica would do with a core of its own, at this CPU cost per job (the machine
        // is shared: this reads through contention better than the wall-clock rate).
        jobs_per_cpu_second: round(1000 / (cpuMs / JOBS)),
        cpu_share_of_one_core_per_replica: round(serverCoreShare, 2),
        event_loop_utilization: round(activeMs / (activeMs + idleMs), 2),
        // On PostgreSQL statements of one replica overlap (a pool), so their summed times may exceed its busy time.
        db_share_of_busy_time: round(dbShare, 2),
      },
      ...(dbCpuMs !== null && {
        database_server: {
          cpu_ms_per_job: round(dbCpuMs / JOBS, 3),
          // The control plane's cost with its database's: what the machine spends per job.
          replicas_and_database_cpu_ms_per_job: round((cpuMs + dbCpuMs) / JOBS, 3),
        },
      }),
      load_generator_cpu_share_of_one_core: round(loadGenCoreShare, 2),
      bound: boundOf(serverCoreShare, activeMs / (activeMs + idleMs), dbShare, loadGenCoreShare, database === "sqlite"),
      server_warnings_logged: warnings,
      unloaded: { jobs: UNLOADED_JOBS, latency_ms: p50p95(unloaded.mine.map((t) => t.resultAckAt! - t.submitStart)), phases_ms: phases(unloaded.mine) },
    };
  } catch (err) {
    // What the replicas said about it, before their directories go.
    for (const f of logFiles) for (const line of readFileSync(f, "utf8").split("\n").filter((l) => /"level":(40|50|60)/.test(l)).slice(0, 20)) console.error(line);
    throw err;
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** What limits the figure, in words, from the replicas' and the load generator's CPU and the machine's load. */
function boundOf(serverCoreShare: number, serverBusy: number, dbShare: number, loadGenCoreShare: number, isInProcessDb: boolean): string {
  const db = `${Math.round(dbShare * 100)}% of its busy time in database statements${isInProcessDb ? " (SQLite runs in its process)" : ""}`;
  const cores = availableParallelism();
  const load = loadavg()[0];
  if (serverBusy >= 0.9 && serverCoreShare < 0.85 && load > cores) {
    return `the server's event loop was busy ${Math.round(serverBusy * 100)}% of the time but got only ${Math.round(serverCoreShare * 100)}% of a core: the machine is oversubscribed (load ${round(load, 1)} on ${cores} cores), so its CPU is the bound and jobs_per_cpu_second is the better figure; ${db}`;
  }
  if (serverBusy >= 0.9) return `the server's CPU (event loop busy ${Math.round(serverBusy * 100)}%, ${Math.round(serverCoreShare * 100)}% of a core), ${db}`;
  if (loadGenCoreShare >= 0.85) return `the load generator (agents and client in the bench process, ${Math.round(loadGenCoreShare * 100)}% of a core); the server was busy ${Math.round(serverBusy * 100)}%`;
  return `neither process was saturated (server busy ${Math.round(serverBusy * 100)}%, ${db}; load generator ${Math.round(loadGenCoreShare * 100)}% of a core): latency (round trips, waiting for passes) bounds it at ${INFLIGHT} jobs in flight`;
}

export async function controlPlaneSection(): Promise<Record<string, unknown>> {
  await build({
    entryPoints: Object.values(SOURCES).map((name) => join(import.meta.dirname, `${name}.ts`)),
    outdir: join(import.meta.dirname, "..", "dist", "bench"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
  });
  const results: Record<string, unknown>[] = [];
  // `postgres` configurations share one server: HODEI_TEST_POSTGRES_URL's, or a throwaway cluster.
  let postgres: TestPostgres | null = null;
  let postgresSkipped: string | false | undefined;
  try {
    for (const config of CONFIGS) {
      const [database, replicas] = config.split(",").map((part) => part.trim());
      const replicaCount = Number(replicas ?? 1);
      const label = `${database}, ${replicaCount} replica(s)`;
      if (database === "postgres") {
        postgresSkipped ??= skipWithoutPostgres("the control_plane section's PostgreSQL configurations");
        if (postgresSkipped) {
          results.push({ config: label, skipped: postgresSkipped });
          continue;
        }
        postgres ??= await startPostgres();
      }
      const runs: Record<string, unknown>[] = [];
      for (let i = 0; i < RUNS; i++) {
        const url = database === "postgres" ? await postgres!.createDatabase("hodei_bench") : undefined;
        try {
          runs.push(await runConfig(database, replicaCount, url, postgres && postgres.leftoverProcesses().length > 0 ? () => postgres!.leftoverProcesses() : undefined));
        } catch (err) {
          // One configuration failing (its replicas' warnings are printed) does not lose the others' figures.
          runs.push({ failed_run: (err as Error).message });
        } finally {
          if (url) await postgres!.drop(url);
        }
      }
      results.push({ config: label, ...spread(runs), runs });
    }
  } finally {
    await postgres?.close();
  }
  return {
    load_average_1m: round(loadavg()[0], 2),
    target_jobs_per_second: { sqlite: 1500, postgres: 1000 },
    configurations: results,
    ...floorComparison(results),
  };
}

/**
 * Each configuration's server CPU per job against the floor's (the same calls with no work behind
 * them), both measured in this run: how much of a job's cost is the control plane's own work, and
 * how many jobs per CPU-second the protocol alone would allow one replica.
 */
function floorComparison(results: Record<string, unknown>[]) {
  const cpuOf = (r: Record<string, unknown>) => {
    const v = r.server_cpu_ms_per_job as number | { min: number } | undefined;
    return typeof v === "number" ? v : v?.min;
  };
  const floor = results.find((r) => String(r.config).startsWith("floor"));
  const floorCpu = floor && cpuOf(floor);
  if (!floorCpu) return {};
  return {
    protocol_floor: {
      server_cpu_ms_per_job: floorCpu,
      jobs_per_server_cpu_second: round(1000 / floorCpu),
      // Server CPU per job of each configuration over the floor's: 1 would be a control plane whose work costs nothing.
      cpu_ratio_to_floor: Object.fromEntries(
        results.filter((r) => r !== floor && cpuOf(r)).map((r) => [String(r.config), round(cpuOf(r)! / floorCpu, 2)]),
      ),
    },
  };
}

/** The runs' jobs/s beside the server's CPU per job and jobs per CPU-second, each as its runs and range (failed runs left out). */
function spread(all: Record<string, unknown>[]) {
  const runs = all.filter((r) => !("failed_run" in r));
  if (runs.length === 0) return { failed: true };
  const of = (values: number[]) => (values.length > 1 ? { runs: values, min: Math.min(...values), max: Math.max(...values) } : values[0]);
  const server = (r: Record<string, unknown>) => r.server as { cpu_ms_per_job: number; jobs_per_cpu_second: number };
  return {
    jobs_per_second: of(runs.map((r) => r.jobs_per_second as number)),
    server_cpu_ms_per_job: of(runs.map((r) => server(r).cpu_ms_per_job)),
    jobs_per_server_cpu_second: of(runs.map((r) => server(r).jobs_per_cpu_second)),
    statements_per_job: of(runs.map((r) => (r.statements_per_job as { total: number }).total)),
    load_average_1m_before: of(runs.map((r) => r.load_average_1m_before as number)),
  };
}
