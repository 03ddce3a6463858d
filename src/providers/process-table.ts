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
import { readdirSync, readFileSync } from "node:fs";

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

function readEnviron(pid: number): Map<string, string> | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/environ`, "latin1");
  } catch {
    return null;
  }
  if (!raw.includes("HODEI_MANAGED_BY=hodei") || !raw.includes("HODEI_PROVIDER=local")) return null;
  const env = new Map<string, string>();
  for (const entry of raw.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0 && entry.startsWith("HODEI_")) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
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
