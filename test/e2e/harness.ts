/**
 * Whole-system test harness: a real `hodei server` process (on a free port, a temporary data
 * directory and a cluster id of its own), the real CLI, and a check that no worker process of
 * that cluster is left behind. Auth is on, as by default: the CLI is given the server's data
 * directory (HODEI_DATA_DIR) and finds the admin key there as it would on the server's machine;
 * raw requests send `bearer(server)`.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Interceptor } from "@connectrpc/connect";
import { findMarkedProcesses } from "../../src/providers/process-table.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const HODEI_BIN = join(ROOT, "bin", "hodei.js");

export interface ServerProcess {
  /** http://127.0.0.1:PORT, or https:// when the server serves TLS. */
  url: string;
  port: number;
  /** HODEI_WORKER_PORT's port when set, else port. */
  workerPort: number;
  clusterId: string;
  dataDir: string;
  /** The admin key the server wrote to <data dir>/admin.key ("" when it wrote none: HODEI_AUTH=off). */
  adminKey: string;
  env: Record<string, string>;
  process: ChildProcess;
  /** Lines the server printed (JSON logs). */
  output: string[];
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit (workers keep running). */
  kill(): Promise<void>;
  /** Removes the data directory. */
  cleanup(): void;
}

export interface StartOptions {
  dataDir?: string;
  clusterId?: string;
  port?: number;
  /** Run the server in this directory without HODEI_DATA_DIR: its data directory is then the default, <cwd>/.hodei. */
  cwd?: string;
  /** Node options for the server process (e.g. --cpu-prof for a bench). */
  nodeArgs?: string[];
}

/** Servers started by this test process: killed when it exits, whatever happened to the test. */
const running = new Set<ChildProcess>();
const killRunning = () => {
  for (const child of running) child.kill("SIGKILL");
};
process.once("exit", killRunning);
// A test process ended by a signal (the runner's timeout, Ctrl-C) emits no "exit": kill them then too.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    killRunning();
    process.exit(signal === "SIGTERM" ? 143 : 130);
  });
}

const SERVER_START_TIMEOUT_MS = 60_000;

export async function startServerProcess(env: Record<string, string> = {}, options: StartOptions = {}): Promise<ServerProcess> {
  const dataDir = options.cwd ? join(options.cwd, ".hodei") : (options.dataDir ?? mkdtempSync(join(tmpdir(), "hodei-e2e-")));
  const clusterId = options.clusterId ?? `t${randomUUID().slice(0, 8)}`;
  const fullEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    HODEI_PORT: String(options.port ?? 0),
    ...(options.cwd ? {} : { HODEI_DATA_DIR: dataDir }),
    HODEI_CLUSTER_ID: clusterId,
    HODEI_RECONCILE_INTERVAL_MS: "500",
    HODEI_ORPHAN_GRACE_MS: "2000",
    HODEI_STOP_GRACE_MS: "2000",
    HODEI_PROVIDERS: "local",
    ...env,
  };
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), HODEI_BIN, "server"], { env: fullEnv, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const output: string[] = [];
  const listening = await new Promise<{ port: number; workerPort: number; url: string }>((resolvePort, reject) => {
    // Generous: several servers starting at once on a loaded machine (CI) take a while; a server
    // that fails to start says so at once (its exit), so this only bounds a hang.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start within ${SERVER_START_TIMEOUT_MS / 1000}s:\n${output.join("\n")}`));
    }, SERVER_START_TIMEOUT_MS);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        output.push(line);
        if (line.includes('"server listening"')) {
          clearTimeout(timer);
          resolvePort(JSON.parse(line) as { port: number; workerPort: number; url: string });
        }
      });
    }
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output.join("\n")}`));
    });
  }).catch((err: unknown) => {
    // A server that never listened is gone: the data directory made for it goes too.
    if (!options.cwd && options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const keyFile = join(dataDir, "admin.key");
  const { port } = listening;
  return {
    url: `${new URL(listening.url).protocol}//127.0.0.1:${port}`,
    port,
    workerPort: listening.workerPort,
    clusterId,
    dataDir,
    adminKey: existsSync(keyFile) ? readFileSync(keyFile, "utf8").trim() : "",
    env: fullEnv,
    process: child,
    output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
    cleanup() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A server as the CLI needs it: its URL, and its data directory when the CLI should find its admin key. */
export type ServerRef = { url: string; dataDir?: string };

/** The Authorization header with the server's admin key, for raw requests. */
export function bearer(server: { adminKey: string }): Record<string, string> {
  return { authorization: `Bearer ${server.adminKey}` };
}

/** Sends the server's admin key on every call of a Connect client. */
export function sendKey(server: { adminKey: string }): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${server.adminKey}`);
    return next(req);
  };
}

/** The environment of a CLI process: the server's URL and data directory (where it finds admin.key), then `extra`. */
export function cliEnv(server: ServerRef | null, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    NO_COLOR: "1",
    ...(server ? { HODEI_SERVER_URL: server.url } : {}),
    ...(server?.dataDir ? { HODEI_DATA_DIR: server.dataDir } : {}),
    ...extra,
  };
}

/** Runs `hodei ARGS` against the server and waits for it to exit. */
export function runCli(server: ServerRef | null, args: string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const env = cliEnv(server, options.env);
    const child = spawn(process.execPath, [HODEI_BIN, ...args], { env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`hodei ${args.join(" ")} did not finish in time\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** Starts `hodei ARGS` and returns the process (for cancel and signal tests). */
export function spawnCli(server: ServerRef, args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [HODEI_BIN, ...args], { env: cliEnv(server, env), stdio: ["ignore", "pipe", "pipe"] });
}

export async function jsonCli<T>(server: ServerRef, args: string[], env: Record<string, string> = {}): Promise<T> {
  const result = await runCli(server, [...args, "--json"], { env });
  if (result.code !== 0) throw new Error(`hodei ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value or timeoutMs passes; returns the last value. */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 15_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await fn();
  while (!value && Date.now() < deadline) {
    await sleep(intervalMs);
    value = await fn();
  }
  return value;
}

/**
 * Processes of workers of the cluster: job processes, and agents that were given a worker (their
 * pid is in <data dir>/work/<worker id>/.agent-pid). Idle warm agents are not workers.
 */
export function workerProcesses(clusterId: string, dataDir: string) {
  const assigned = new Set<number>();
  const workRoot = join(dataDir, "work");
  if (existsSync(workRoot)) {
    for (const name of readdirSync(workRoot)) {
      try {
        assigned.add(Number(readFileSync(join(workRoot, name, ".agent-pid"), "utf8")));
      } catch {
        // not a worker directory
      }
    }
  }
  return findMarkedProcesses(clusterId).filter((p) => p.workerId !== "" || assigned.has(p.pid));
}

/** Waits for every worker process of the server's cluster to be gone; returns those still alive after timeoutMs. */
export async function leftoverProcesses(server: { clusterId: string; dataDir: string }, timeoutMs = 15_000) {
  await eventually(() => workerProcesses(server.clusterId, server.dataDir).length === 0, timeoutMs);
  return workerProcesses(server.clusterId, server.dataDir);
}

/** After the server stopped: every process of the cluster, idle agents included, must be gone. */
export async function anyClusterProcesses(clusterId: string, timeoutMs = 10_000) {
  await eventually(() => findMarkedProcesses(clusterId).length === 0, timeoutMs);
  return findMarkedProcesses(clusterId);
}

/** Kills whatever is left of a cluster (cleanup after a failed test, so one failure does not cascade). */
export function killCluster(clusterId: string): void {
  for (const p of findMarkedProcesses(clusterId)) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/**
 * Stops the server and proves it left no process of its cluster, idle agents included. Whatever is
 * left is killed and the data directory removed before the check fails, so one failure does not
 * cascade.
 */
export async function stopLeavingNothing(server: Pick<ServerProcess, "stop" | "cleanup" | "clusterId">, message = "stopping the server releases its idle agents"): Promise<void> {
  await server.stop();
  const left = await anyClusterProcesses(server.clusterId);
  killCluster(server.clusterId);
  server.cleanup();
  assert.deepEqual(left, [], message);
}

/** A job as `hodei jobs get --json` prints it (the fields the tests read). */
export interface JobJson {
  id: string;
  state: string;
  exitCode: number | null;
  reason: string;
  provider: string;
  attempts: number;
  /** Absent from JSON when 0. */
  uncountedAttempts?: number;
  maxAttempts: number;
  createdAt: string;
  timeline: Record<string, string>;
  logsTruncated?: boolean;
  logsIncomplete?: boolean;
  /** The name of the API key that submitted the job. */
  submittedBy: string;
  env: Record<string, string>;
  envRedacted: boolean;
}

/** An OTP token as `hodei tokens --json` prints it. */
export interface TokenJson {
  provider: string;
  providerResourceId: string;
  resourceType: string;
  consumed: boolean;
  expired: boolean;
  jobId: string;
  workerId: string;
}

/** A worker as `hodei workers --json` prints it. */
export interface WorkerJson {
  id: string;
  provider: string;
  providerResourceId: string;
  state: string;
  jobId: string;
}

/** Polls the job until `predicate` holds or timeoutMs passes; returns the last job read. */
export async function jobWhen(server: ServerRef, id: string, predicate: (job: JobJson) => boolean, timeoutMs = 30_000): Promise<JobJson> {
  let job = await jsonCli<JobJson>(server, ["jobs", "get", id]);
  const deadline = Date.now() + timeoutMs;
  while (!predicate(job) && Date.now() < deadline) {
    await sleep(100);
    job = await jsonCli<JobJson>(server, ["jobs", "get", id]);
  }
  return job;
}

/** The job once its (latest) worker is destroyed. */
export function waitDestroyed(server: ServerRef, id: string, timeoutMs = 30_000): Promise<JobJson> {
  return jobWhen(server, id, (job) => Boolean(job.timeline.destroyed), timeoutMs);
}
