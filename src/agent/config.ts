/**
 * The agent's only reader of its environment and of its assignment.
 *
 * Two ways to get an assignment (the OTP token and the worker's identity):
 * - from stdin, one JSON line (local and Docker providers): the agent starts with only the server's
 *   worker-facing URL and its cluster's markers, and is handed a worker later (a warm local agent),
 *   or at once (a container, whose stdin the provider writes once and closes);
 * - from its environment (Kubernetes pods): HODEI_OTP_TOKEN, which the kubelet resolves from the
 *   pod's own Secret (secretKeyRef: the pod spec holds no token), and HODEI_WORKER_ID,
 *   HODEI_WORKER_NAME, HODEI_JOB_ID, HODEI_ATTEMPT, HODEI_WORK_DIR.
 * The token is taken out of the agent's environment as soon as it is read, so nothing the agent
 * starts can inherit it (the job's processes never got HODEI_* variables anyway).
 */
import { read } from "node:fs";
import { readTlsCa } from "./tls-ca.js";

export interface AgentConfig {
  serverUrl: string;
  /** How long to keep trying to register (connection refused, not yet recorded). */
  registerTimeoutMs: number;
  /** How long to keep trying to reconnect a lost stream before giving up on the attempt. */
  reconnectWindowMs: number;
  /**
   * HTTP/2 keep-alive (transport.ts): while a call is open, a PING after this long without a byte
   * from the control plane, ms. HODEI_AGENT_PING_INTERVAL_MS, default 10000.
   */
  pingIntervalMs: number;
  /**
   * A PING unanswered for this long ends the connection and its calls, ms; a silently dead
   * connection is so found within pingIntervalMs + pingTimeoutMs (20 s by default, before the
   * server's heartbeat timeout, 30 s, ends the stream on its side). HODEI_AGENT_PING_TIMEOUT_MS,
   * default 10000.
   */
  pingTimeoutMs: number;
  /** Log output is cut into a chunk after this long without a flush. */
  flushIntervalMs: number;
  /** The job's environment starts from these (PATH, HOME, ...): the agent's, without HODEI_* and HODEI_AGENT_OWN_ENV's variables. */
  baseEnv: Record<string, string>;
  /** Non-secret markers passed on to every process of the job. */
  markers: Record<string, string>;
  /** PEM CA certificates that verify an https:// server; undefined: the system's roots. */
  tlsCa?: string[];
  /** HODEI_AGENT_BOOT_TRACE=1: log the boot phases once (main.ts). Default off. */
  bootTrace?: boolean;
}

export interface Assignment {
  otpToken: string;
  workerId: string;
  workerName: string;
  jobId: string;
  attempt: number;
  workDir: string;
  /** Local provider: the job's own cgroup (job-cgroup.ts), when it has limits this machine enforces. */
  cgroup?: { procs: string[]; oomCount: string };
}

export function readAgentConfig(env: NodeJS.ProcessEnv): AgentConfig {
  const serverUrl = env.HODEI_SERVER_URL ?? "";
  if (!serverUrl) throw new Error("HODEI_SERVER_URL is not set: the agent needs the control plane's worker-facing address");
  // The job's environment is the agent's, without HODEI_* and the variables the server set for
  // the agent's process alone (HODEI_AGENT_OWN_ENV, comma-separated: its malloc tuning).
  const own = new Set((env.HODEI_AGENT_OWN_ENV ?? "").split(",").filter(Boolean));
  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !key.startsWith("HODEI_") && !own.has(key)) baseEnv[key] = value;
  }
  const markers: Record<string, string> = { HODEI_MANAGED_BY: env.HODEI_MANAGED_BY ?? "hodei" };
  if (env.HODEI_CLUSTER_ID) markers.HODEI_CLUSTER_ID = env.HODEI_CLUSTER_ID;
  if (env.HODEI_PROVIDER) markers.HODEI_PROVIDER = env.HODEI_PROVIDER;
  return {
    serverUrl,
    registerTimeoutMs: positiveMs(env, "HODEI_REGISTER_TIMEOUT_MS", 60_000),
    reconnectWindowMs: positiveMs(env, "HODEI_RECONNECT_WINDOW_MS", 120_000),
    pingIntervalMs: positiveMs(env, "HODEI_AGENT_PING_INTERVAL_MS", 10_000),
    pingTimeoutMs: positiveMs(env, "HODEI_AGENT_PING_TIMEOUT_MS", 10_000),
    flushIntervalMs: positiveMs(env, "HODEI_LOG_FLUSH_INTERVAL_MS", 25),
    baseEnv,
    markers,
    tlsCa: readTlsCa(env),
    bootTrace: env.HODEI_AGENT_BOOT_TRACE === "1",
  };
}

/** A duration from the environment: unset or empty is the default; anything but a positive number of ms is refused. */
function positiveMs(env: NodeJS.ProcessEnv, name: string, defaultMs: number): number {
  const value = env[name];
  if (value === undefined || value === "") return defaultMs;
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`${name} must be a positive whole number of milliseconds (got "${value}")`);
  return ms;
}

/** Parses the assignment line; throws with a message saying what is missing (never echoing the line: it holds the token). */
export function parseAssignment(line: string): Assignment {
  let value: Partial<Assignment>;
  try {
    value = JSON.parse(line) as Partial<Assignment>;
  } catch {
    throw new Error(`assignment: not a JSON object (${line.length} bytes)`);
  }
  if (typeof value !== "object" || value === null) throw new Error("assignment: not a JSON object");
  for (const key of ["otpToken", "workerId", "workerName", "jobId", "workDir"] as const) {
    if (typeof value[key] !== "string" || value[key] === "") throw new Error(`assignment: ${key} is missing`);
  }
  const cgroup = value.cgroup;
  if (cgroup !== undefined) {
    const isPaths = Array.isArray(cgroup?.procs) && cgroup.procs.every((p) => typeof p === "string" && p.startsWith("/"));
    if (!isPaths || typeof cgroup.oomCount !== "string") throw new Error("assignment: cgroup must name absolute cgroup.procs paths and an oomCount file");
  }
  return { ...(value as Assignment), attempt: Number(value.attempt ?? 0) };
}

/**
 * The assignment given in the environment, or null when the agent is to wait for one on stdin.
 * Removes HODEI_OTP_TOKEN from `env` (process.env in the agent) once read.
 */
export function takeAssignmentFromEnv(env: NodeJS.ProcessEnv): Assignment | null {
  if (!env.HODEI_OTP_TOKEN) return null;
  const otpToken = env.HODEI_OTP_TOKEN;
  delete env.HODEI_OTP_TOKEN;
  return parseAssignment(
    JSON.stringify({
      otpToken,
      workerId: env.HODEI_WORKER_ID,
      workerName: env.HODEI_WORKER_NAME,
      jobId: env.HODEI_JOB_ID,
      attempt: env.HODEI_ATTEMPT,
      workDir: env.HODEI_WORK_DIR || "/tmp/hodei-work",
    }),
  );
}

/** The markers every process of the job carries, so the provider finds the whole tree. */
export function jobMarkers(config: AgentConfig, assignment: Assignment): Record<string, string> {
  return {
    ...config.markers,
    HODEI_WORKER_ID: assignment.workerId,
    HODEI_WORKER_NAME: assignment.workerName,
    HODEI_JOB_ID: assignment.jobId,
    HODEI_ATTEMPT: String(assignment.attempt),
    HODEI_WORKER_PID: String(process.pid),
  };
}

/** The longest assignment line read; a longer one is refused (it is a few hundred bytes). */
export const MAX_ASSIGNMENT_BYTES = 64 * 1024;

/**
 * Reads the first line of the file descriptor (stdin: 0) with fs.read, on libuv's thread pool;
 * null when it ends first (the provider let go of this agent).
 *
 * Not through process.stdin: a pipe opened as a stream is registered with the event loop, and
 * letting it go again (its destroy, or the end that follows the line) removes it from epoll, which
 * held the agent's main thread for a median 3.3 ms on the way from its assignment to its Register
 * (traced in a warm container: the epoll_ctl DEL of its stdin), and cost more than the thread
 * pool's extra wake-up it takes here (interleaved runs: decision 0003). Read this way, the descriptor is never
 * registered and simply stays open, unread, until the agent exits.
 *
 * A descriptor that is non-blocking (EAGAIN; never seen from the providers, which hand the agent
 * a blocking pipe) is read through `fallback()` instead, after what was already read.
 */
export async function readAssignmentFrom(fd: number, fallback: () => NodeJS.ReadableStream): Promise<string | null> {
  const buffer = Buffer.allocUnsafe(16 * 1024);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = await new Promise<number>((resolve, reject) => read(fd, buffer, 0, buffer.length, null, (err, bytes) => (err ? reject(err) : resolve(bytes))));
    } catch (err) {
      // An error is an end, as on the stream (below): no assignment can come.
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") return null;
      return readAssignmentLine(fallback(), Buffer.concat(chunks).toString());
    }
    if (n === 0) {
      const text = Buffer.concat(chunks).toString();
      return text.trim() ? text : null;
    }
    const newline = buffer.subarray(0, n).indexOf(10);
    const end = newline >= 0 ? newline : n;
    chunks.push(Buffer.from(buffer.subarray(0, end)));
    total += end;
    if (total > MAX_ASSIGNMENT_BYTES) throw new Error(`assignment: no line end within ${MAX_ASSIGNMENT_BYTES} bytes`);
    if (newline >= 0) return Buffer.concat(chunks).toString();
  }
}

/**
 * Runs until `reading` (readAssignmentFrom) settles with a crash ending the process by SIGKILL.
 * A read on libuv's thread pool that never returns would hold Node's exit for ever: libuv joins
 * its threads as the process exits, and a thread blocked in read(2) on a silent stdin never comes
 * back. An uncaught error of an idle agent (a bug) then ends it at once, as it did with the
 * stream, so its provider sees it gone (and a warm pool replaces it).
 */
export async function endOnCrashWhile<T>(reading: Promise<T>, log: (message: string, fields: Record<string, unknown>) => void): Promise<T> {
  const onCrash = (err: unknown) => {
    log("agent failed while waiting for its assignment", { error: err instanceof Error ? err.message : String(err) });
    process.kill(process.pid, "SIGKILL");
  };
  process.on("uncaughtException", onCrash);
  try {
    return await reading;
  } finally {
    process.off("uncaughtException", onCrash);
  }
}

/** Reads the first line of a stream, after `start` (read before); null when it ends first. */
export function readAssignmentLine(input: NodeJS.ReadableStream, start = ""): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let buffer = start;
    const onData = (chunk: Buffer | string) => {
      buffer += chunk.toString();
      const newline = buffer.indexOf("\n");
      if (newline >= 0) {
        cleanup();
        resolve(buffer.slice(0, newline));
      } else if (Buffer.byteLength(buffer) > MAX_ASSIGNMENT_BYTES) {
        cleanup();
        reject(new Error(`assignment: no line end within ${MAX_ASSIGNMENT_BYTES} bytes`));
      }
    };
    const onEnd = () => {
      cleanup();
      resolve(buffer.trim() ? buffer : null);
    };
    const cleanup = () => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.off("error", onEnd);
    };
    input.on("data", onData);
    input.on("end", onEnd);
    input.on("error", onEnd);
  });
}
