/**
 * The `history` section of `npm run bench` (alone: BENCH_ONLY=history): costs must not grow with
 * history. Two figures, each measured on an empty database and on one holding 200,000 finished jobs
 * (BENCH_HISTORY_JOBS), and their ratio (target: within 1.2x):
 *
 *   store_per_job_us          the statements of one job's lifecycle, timed directly on the store
 *                             (submit, claim, provisioned, token consumed, register, dispatch, a log
 *                             append, the log count and end of the result, destroy), per job: wall
 *                             time per job, and this process's CPU time per job (median of 20 rounds)
 *   submit_to_succeeded_ms    `echo hello` submitted to a real server on the local provider until
 *                             GetJob says succeeded (client-observed), one job after the other
 *
 * Both databases are measured in alternating rounds (two servers run at once and take turns), so
 * that a loaded machine weighs on both alike; the 1-minute load average is printed beside the figures.
 * BENCH_HISTORY_JOBS, BENCH_HISTORY_STORE_JOBS (2000) and BENCH_RUNS (40) change the sizes.
 *
 * The history is written fast and realistic: in one transaction, prepared inserts of finished jobs
 * (a few failed), each with its destroyed worker, its consumed OTP token and one log row, finished
 * over the last 3 days (inside the default 7-day retention, so the server keeps them; its retention
 * step runs on every full pass as it would in production).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import SqliteDatabase from "better-sqlite3";
import { validateJobSpec } from "../src/core/job-spec.js";
import { workerName } from "../src/core/ids.js";
import { JobService } from "../src/gen/hodei/v1/api_pb.js";
import { DEFAULT_CLAIM_BATCH } from "../src/scheduler/provision.js";
import { openDatabase } from "../src/store/database.js";
import { Store } from "../src/store/store.js";
import { sendKey, startServerProcess } from "../test/e2e/harness.js";

const HISTORY_JOBS = Number(process.env.BENCH_HISTORY_JOBS ?? 200_000);
const STORE_JOBS = Number(process.env.BENCH_HISTORY_STORE_JOBS ?? 2000);
const HELLO_RUNS = Number(process.env.BENCH_RUNS ?? 40);
const DAY_MS = 86_400_000;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const summary = (values: number[]) => ({
  p50: round(percentile(values, 50)),
  p95: round(percentile(values, 95)),
  mean: round(values.reduce((a, b) => a + b, 0) / values.length),
});
const hex = () => randomBytes(32).toString("hex");

/** Writes `count` finished jobs with their destroyed workers, consumed tokens and a log row each, in one transaction. */
function populate(path: string, count: number): number {
  const t0 = performance.now();
  const db = new SqliteDatabase(path);
  // A fixture, not the server: no durability needed, and a cache large enough that inserts into the
  // random-key indexes (ids, token and session hashes) do not read pages back from disk.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = OFF");
  db.pragma("cache_size = -1048576");
  const insertJob = db.prepare(
    `insert into jobs (id, state, command, script, provider, env, timeout_seconds, labels, image, cpu_millis, memory_mb, idempotency_key,
       max_attempts, attempts, exit_code, reason, logs_truncated, logs_incomplete, not_before_ms, created_at, updated_at, finished_at)
     values (?, ?, ?, '', 'local', '{}', 3600, ?, '', 0, 0, ?, 1, 1, ?, ?, 0, 0, ?, ?, ?, ?)`,
  );
  const insertWorker = db.prepare(
    `insert into workers (id, name, job_id, attempt, provider, provider_resource_id, resource_type, state, session_hash, reported_hostname,
       created_at, provisioned_at, registered_at, started_at, finished_at, destroyed_at, registration_deadline_ms, last_heartbeat_ms,
       stop_deadline_ms, failure_reason, destroy_attempts, last_error)
     values (?, ?, ?, 1, 'local', ?, 'process_id', 'destroyed', ?, 'bench-host', ?, ?, ?, ?, ?, ?, ?, ?, null, '', 0, '')`,
  );
  const insertToken = db.prepare(
    `insert into otp_tokens (id, token_hash, job_id, attempt, worker_id, provider, provider_resource_id, resource_type, created_at, expires_at, consumed_at)
     values (?, ?, ?, 1, ?, 'local', ?, 'process_id', ?, ?, ?)`,
  );
  const insertLog = db.prepare(`insert into job_logs (job_id, attempt, seq, stream, data, time_ms) values (?, 1, 1, 'stdout', ?, ?)`);
  const start = Date.now() - 3 * DAY_MS;
  const stepMs = (3 * DAY_MS - 60_000) / count;
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const created = Math.floor(start + i * stepMs);
      const jobId = randomUUID();
      const workerId = randomUUID();
      const pid = String(10_000 + (i % 50_000));
      const failed = i % 20 === 0;
      insertJob.run(
        jobId,
        failed ? "failed" : "succeeded",
        JSON.stringify(["sh", "-c", `process-batch --part ${i}`]),
        JSON.stringify({ team: "data", run: String(i % 1000) }),
        i % 4 === 0 ? `nightly-${i}` : null,
        failed ? 1 : 0,
        failed ? "exited with code 1" : "",
        created,
        created,
        created + 900,
        created + 900,
      );
      insertWorker.run(workerId, workerName(workerId), jobId, pid, hex(), created, created + 100, created + 200, created + 250, created + 900, created + 1000, created + 60_000, created + 800);
      insertToken.run(randomUUID(), hex(), jobId, workerId, pid, created, created + 60_000, created + 200);
      insertLog.run(jobId, `part ${i} done: 1024 records\n`, created + 800);
    }
  })();
  db.close();
  return (performance.now() - t0) / 1000;
}

const NODE_ID = "bench-node";
/** HODEI_LOCAL_MAX_WORKERS's default (src/config.ts). */
const LOCAL_MAX_WORKERS = 16;

/** One job's lifecycle on the store, as the scheduler and the worker service run it; its duration in µs. */
async function lifecycle(store: Store): Promise<number> {
  const spec = validateJobSpec({ command: ["echo", "hello"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
  const jobId = randomUUID();
  const workerId = randomUUID();
  const otpHash = hex();
  const t0 = performance.now();
  const now = Date.now();
  await store.jobs.insert(jobId, spec, now);
  // As the reconciler claims for the local provider (node-bound, HODEI_LOCAL_MAX_WORKERS at its default).
  const claimed = await store.attempts.claimBatch({ provider: "local", nowMs: now, limit: DEFAULT_CLAIM_BATCH, maxWorkers: LOCAL_MAX_WORKERS, nodeId: NODE_ID }, (job) => ({
    worker: { id: workerId, name: workerName(workerId), jobId: job.id, attempt: job.attempts, provider: "local", registrationDeadlineMs: now + 60_000, nodeId: NODE_ID },
    token: { id: randomUUID(), tokenHash: otpHash, expiresAtMs: now + 60_000 },
  }));
  if (claimed.length !== 1 || claimed[0].job.id !== jobId) throw new Error("bench: the claim did not take the job just submitted, alone");
  await store.attempts.recordProvisioned(workerId, "12345", "process_id", now);
  if (!(await store.tokens.consume(otpHash, now))) throw new Error("bench: token not consumed");
  const registered = await store.attempts.register(workerId, hex(), "bench-host", now);
  if (!registered || !(await store.attempts.dispatch(registered, now))) throw new Error("bench: dispatch failed");
  await store.logs.append(workerId, [{ seq: 1, stream: "stdout", data: Buffer.from("hello\n"), timeMs: now }], null);
  await store.workers.get(workerId); // the result's completeness check reads the worker's log_seq
  await store.attempts.end(registered, "succeeded", now, { exit_code: 0, finished_at: now }, "");
  await store.workers.transition(workerId, "destroyed", { destroyed_at: now });
  return (performance.now() - t0) * 1000;
}

interface StoreTimes {
  /** Wall time of each job's statements, µs. */
  wall: number[];
  /** CPU time (user + system) of this process per job, one figure per round, µs: less sensitive to a loaded machine. */
  cpu: number[];
}

/**
 * Per-job times on both databases, in alternating rounds so that whatever else the machine does
 * weighs on both alike.
 */
async function storeCost(emptyPath: string, fullPath: string): Promise<{ empty: StoreTimes; full: StoreTimes }> {
  const open = async (path: string) => {
    const { db, kind } = await openDatabase(`sqlite:${path}`);
    return new Store(db, kind);
  };
  const empty = await open(emptyPath);
  const full = await open(fullPath);
  const times = { empty: { wall: [], cpu: [] } as StoreTimes, full: { wall: [], cpu: [] } as StoreTimes };
  const round = async (store: Store, into: StoreTimes, jobs: number) => {
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < jobs; i++) into.wall.push(await lifecycle(store));
    const cpu = process.cpuUsage(cpu0);
    into.cpu.push((cpu.user + cpu.system) / jobs);
  };
  try {
    for (let i = 0; i < 200; i++) {
      // Warm up: prepared statements, hot pages.
      await lifecycle(empty);
      await lifecycle(full);
    }
    const rounds = 20;
    for (let i = 0; i < rounds; i++) {
      await round(empty, times.empty, STORE_JOBS / rounds);
      await round(full, times.full, STORE_JOBS / rounds);
    }
    return times;
  } finally {
    await empty.close();
    await full.close();
  }
}

type Client = ReturnType<typeof createClient<typeof JobService>>;

async function helloUntilSucceeded(client: Client): Promise<number> {
  const t0 = performance.now();
  const { job } = await client.submitJob({ command: ["echo", "hello"] });
  for (;;) {
    const now = await client.getJob({ id: job!.id });
    if (now.state === "succeeded") return performance.now() - t0;
    if (["failed", "canceled", "timed_out"].includes(now.state)) throw new Error(`bench: job ${now.id} ended ${now.state}: ${now.reason}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Both servers run at once and take turns, one job each, so that the machine's load weighs on both alike. */
async function serverLatency(emptyDir: string, fullDir: string): Promise<{ empty: number[]; full: number[] }> {
  const servers = [await startServerProcess({}, { dataDir: emptyDir }), await startServerProcess({}, { dataDir: fullDir })];
  try {
    const [empty, full] = servers.map((server) => createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] })));
    for (let i = 0; i < 3; i++) {
      await helloUntilSucceeded(empty);
      await helloUntilSucceeded(full);
    }
    const times = { empty: [] as number[], full: [] as number[] };
    for (let i = 0; i < HELLO_RUNS; i++) {
      times.empty.push(await helloUntilSucceeded(empty));
      times.full.push(await helloUntilSucceeded(full));
    }
    return times;
  } finally {
    for (const server of servers) await server.stop();
  }
}

export async function historySection(): Promise<Record<string, unknown>> {
  const loadStart = loadavg()[0];
  const emptyDir = mkdtempSync(join(tmpdir(), "hodei-bench-empty-"));
  const fullDir = mkdtempSync(join(tmpdir(), "hodei-bench-history-"));
  try {
    const emptyDb = join(emptyDir, "hodei.db");
    const fullDb = join(fullDir, "hodei.db");
    // Migrate both the way the server does, then write the history directly.
    for (const path of [emptyDb, fullDb]) await (await openDatabase(`sqlite:${path}`)).db.destroy();
    const populateSeconds = populate(fullDb, HISTORY_JOBS);
    const dbMb = statSync(fullDb).size / 1024 / 1024;

    const store = await storeCost(emptyDb, fullDb);
    const storeEmpty = summary(store.empty.wall);
    const storeFull = summary(store.full.wall);
    const cpuEmpty = percentile(store.empty.cpu, 50);
    const cpuFull = percentile(store.full.cpu, 50);
    const latency = await serverLatency(emptyDir, fullDir);
    const latencyEmpty = summary(latency.empty);
    const latencyFull = summary(latency.full);
    return {
      finished_jobs: HISTORY_JOBS,
      populate_seconds: round(populateSeconds),
      database_mb: round(dbMb),
      store_per_job_us: {
        jobs: STORE_JOBS,
        empty: storeEmpty,
        with_history: storeFull,
        ratio_p50: round(storeFull.p50 / storeEmpty.p50, 2),
        cpu_p50_of_rounds: { empty: round(cpuEmpty), with_history: round(cpuFull), ratio: round(cpuFull / cpuEmpty, 2) },
      },
      submit_to_succeeded_ms: { runs: HELLO_RUNS, empty: latencyEmpty, with_history: latencyFull, ratio_p50: round(latencyFull.p50 / latencyEmpty.p50, 2) },
      target: "each ratio within 1.2x",
      load_average_1m: { start: round(loadStart), end: round(loadavg()[0]), cpus: availableParallelism() },
    };
  } finally {
    rmSync(emptyDir, { recursive: true, force: true });
    rmSync(fullDir, { recursive: true, force: true });
  }
}
