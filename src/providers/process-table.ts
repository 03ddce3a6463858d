/**
 * Reads the machine's process table (Linux /proc) to find the processes of local workers.
 * Every process of a local worker carries marker variables in its environment:
 *   agents:        HODEI_MANAGED_BY=hodei, HODEI_PROVIDER=local, HODEI_CLUSTER_ID, HODEI_WARM_ID
 *   job processes: the same, plus HODEI_WORKER_ID and HODEI_WORKER_PID
 * Containers on the host network show in the same process table with HODEI_PROVIDER=docker (or
 * kubernetes): those belong to their own provider and are never reported here.
 * Markers survive the control plane's restart, so workers can be found and reaped without any
 * state kept in memory. Processes of other users or other clusters are never touched.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";

export interface MarkedProcess {
  pid: number;
  pgid: number;
  clusterId: string;
  /** Set on job processes; "" on an agent (its identity arrives after start, on stdin). */
  workerId: string;
  /** Set on agents: the id it was started under, before it had a worker. */
  warmId: string;
  /** The agent's pid (the worker's provider_resource_id); for the agent itself, its own pid. */
  workerPid: number;
  /** Start time, epoch ms. */
  startedAtMs: number;
}

let bootTimeMs: number | undefined;
function getBootTimeMs(): number {
  if (bootTimeMs === undefined) {
    const line = readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith("btime "));
    bootTimeMs = Number(line?.split(" ")[1] ?? 0) * 1000;
  }
  return bootTimeMs;
}
const CLOCK_TICKS_PER_SECOND = 100;

/** Read buffer for environ files, reused by every scan (one scan runs at a time: it is synchronous). */
const environBuffer = Buffer.allocUnsafe(256 * 1024);
const MANAGED = Buffer.from("HODEI_MANAGED_BY=hodei\0");
const LOCAL = Buffer.from("HODEI_PROVIDER=local\0");

/**
 * The HODEI_* variables of a process that carries our local markers, else null. A scan reads every
 * process's environ, so this reads it with one open, read and close into a reused buffer and looks
 * for the markers in the bytes: no string is made of a process that is not ours. An environ larger
 * than the buffer is read whole (rare: a job with a huge environment).
 */
function readEnviron(pid: number): Map<string, string> | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/environ`, "r");
  } catch {
    return null;
  }
  let raw: Buffer;
  try {
    let length = 0;
    while (length < environBuffer.length) {
      const n = readSync(fd, environBuffer, length, environBuffer.length - length, null);
      if (n <= 0) break;
      length += n;
    }
    raw = length < environBuffer.length ? environBuffer.subarray(0, length) : Buffer.concat([environBuffer, readRest(fd)]);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
  // Each entry ends with NUL; the first one may also start the buffer.
  if (!hasEntry(raw, MANAGED) || !hasEntry(raw, LOCAL)) return null;
  const env = new Map<string, string>();
  for (const entry of raw.toString("latin1").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0 && entry.startsWith("HODEI_")) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** True when `entry` (NUL-terminated) is a whole entry of the environ bytes. */
function hasEntry(raw: Buffer, entry: Buffer): boolean {
  for (let at = raw.indexOf(entry); at >= 0; at = raw.indexOf(entry, at + 1)) {
    if (at === 0 || raw[at - 1] === 0) return true;
  }
  return false;
}

/** What is left of a file after the buffer filled up. */
function readRest(fd: number): Buffer {
  const parts: Buffer[] = [];
  for (;;) {
    const part = Buffer.allocUnsafe(256 * 1024);
    const n = readSync(fd, part, 0, part.length, null);
    if (n <= 0) return Buffer.concat(parts);
    parts.push(part.subarray(0, n));
  }
}

interface ProcStat {
  state: string;
  pgid: number;
  startedAtMs: number;
}

export function readStat(pid: number): ProcStat | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const fields = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
  const startTicks = Number(fields[19]);
  return { state: fields[0], pgid: Number(fields[2]), startedAtMs: getBootTimeMs() + (startTicks * 1000) / CLOCK_TICKS_PER_SECOND };
}

/** True while pid names a live (not zombie) process. */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== null && stat.state !== "Z" && stat.state !== "X";
}

/** Every live process that carries our markers for `clusterId` (all clusters when omitted). */
export function findMarkedProcesses(clusterId?: string): MarkedProcess[] {
  const found: MarkedProcess[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    const env = readEnviron(pid);
    if (!env) continue;
    const cluster = env.get("HODEI_CLUSTER_ID") ?? "";
    const workerId = env.get("HODEI_WORKER_ID") ?? "";
    const warmId = env.get("HODEI_WARM_ID") ?? "";
    if (env.get("HODEI_PROVIDER") !== "local") continue;
    if ((!workerId && !warmId) || (clusterId !== undefined && cluster !== clusterId)) continue;
    const stat = readStat(pid);
    if (!stat || stat.state === "Z" || stat.state === "X") continue;
    const workerPid = Number(env.get("HODEI_WORKER_PID") ?? pid);
    found.push({ pid, pgid: stat.pgid, clusterId: cluster, workerId, warmId, workerPid, startedAtMs: stat.startedAtMs });
  }
  return found;
}
