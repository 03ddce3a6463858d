/**
 * The agent's side of a job's resource limits.
 *
 * Joining: on the local provider the job may have a cgroup of its own (made by the provider, named
 * in the assignment). The job's shell joins it before it runs the command: a small `sh` writes its
 * own pid ($$) to each cgroup.procs, then execs the command's shell, so every process of the job is
 * in the cgroup from the first instruction, and the agent is not. A cgroup that cannot be joined
 * ends the job (exit 125) with the reason on stderr, rather than letting it run unlimited.
 *
 * The job before its agent: with a memory limit, the job's processes get the highest OOM score
 * (oom_score_adj 1000, set by the same shell), so that when the worker's memory runs out the kernel
 * kills the job, not the agent that must report it (in a container they share the limit, and a
 * small job can be smaller than Node).
 *
 * Out of memory: a job the kernel's OOM killer ended dies by SIGKILL (often a child of its shell,
 * which then exits 137), which its exit status alone cannot tell from a kill by anyone else. The
 * cgroup's `oom_kill` count can: it is read when the job starts and when it ends. The count is that
 * of the job's own cgroup (local), or of the worker's container (docker, kubernetes: the agent's own
 * cgroup, /sys/fs/cgroup/memory.events under cgroup v2 with a cgroup namespace, or
 * /sys/fs/cgroup/memory/memory.oom_control under v1). Docker's State.OOMKilled and a pod's
 * OOMKilled reason only cover the container's main process; this covers the job's.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const WRAPPER_SCRIPT =
  'adj=$1; n=$2; shift 2; [ -z "$adj" ] || echo "$adj" > /proc/self/oom_score_adj 2>/dev/null; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "hodei: cannot join the job\'s cgroup ($1); not running it unlimited" >&2; exit 125; }; shift; n=$((n-1)); done; exec "$@"';

/**
 * The OOM killer's bias for the job's processes when it has a memory limit: the highest, so that in
 * the worker's memory (a container holds the agent too) the kernel kills the job before its agent,
 * which then reports why. Raising one's own score needs no privilege; failing to is ignored.
 */
export const JOB_OOM_SCORE_ADJ = 1000;

/** argv that sets the job's OOM score (when given), joins the cgroups (their cgroup.procs files), then execs `argv`. */
export function wrapJobArgv(options: { procs: string[]; oomScoreAdj?: number }, argv: string[]): string[] {
  const adj = options.oomScoreAdj === undefined ? "" : String(options.oomScoreAdj);
  return ["sh", "-c", WRAPPER_SCRIPT, "hodei-job", adj, String(options.procs.length), ...options.procs, ...argv];
}

/** argv that joins the cgroups and then execs `argv`. */
export function joinCgroupArgv(procs: string[], argv: string[]): string[] {
  return wrapJobArgv({ procs }, argv);
}

/** `oom_kill N` of memory.events (v2) or memory.oom_control (v1); null when the file cannot be read. */
export function readOomKills(file: string): number | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return null;
  }
  const match = /^oom_kill (\d+)$/m.exec(text);
  return match ? Number(match[1]) : null;
}

/**
 * The file with the OOM kill count of the agent's own cgroup (a container's), from
 * /proc/self/cgroup: the memory controller's v1 hierarchy when it has one, else cgroup v2. The
 * path inside /sys/fs/cgroup is tried first as named, then as the namespace's root (a container
 * sees its own cgroup there). "" when none can be read.
 */
export function ownOomCountFile(procSelfCgroup: string, cgroupRoot = "/sys/fs/cgroup"): string {
  const lines = procSelfCgroup.split("\n").map((l) => l.split(":"));
  const v1 = lines.find((parts) => parts.length >= 3 && parts[1].split(",").includes("memory"));
  const v2 = lines.find((parts) => parts.length >= 3 && parts[0] === "0" && parts[1] === "");
  const candidates = v1
    ? [join(cgroupRoot, "memory", v1.slice(2).join(":"), "memory.oom_control"), join(cgroupRoot, "memory", "memory.oom_control")]
    : v2
      ? [join(cgroupRoot, v2.slice(2).join(":"), "memory.events"), join(cgroupRoot, "memory.events")]
      : [];
  return candidates.find((file) => existsSync(file) && readOomKills(file) !== null) ?? "";
}

/** Counts OOM kills from when the job starts: wasKilled() after it ended says whether one hit it. */
export class OomWatch {
  private readonly baseline: number | null;

  constructor(private readonly file: string) {
    this.baseline = file ? readOomKills(file) : null;
  }

  /** True when the cgroup's OOM killer killed a process since the watch began. */
  wasKilled(): boolean {
    if (this.baseline === null) return false;
    const now = readOomKills(this.file);
    return now !== null && now > this.baseline;
  }
}

/** Where the agent reads the job's OOM kill count: its own cgroup given by the provider, else its container's. */
export function oomCountFileFor(assigned: string | undefined, provider: string | undefined): string {
  if (assigned) return assigned;
  if (provider !== "docker" && provider !== "kubernetes") return ""; // a local agent's own cgroup is shared with the host
  try {
    return ownOomCountFile(readFileSync("/proc/self/cgroup", "utf8"));
  } catch {
    return "";
  }
}
