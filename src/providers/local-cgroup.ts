/**
 * Resource limits for local jobs: a cgroup of the job's own, where this machine lets the control
 * plane make one, else nothing, said plainly.
 *
 * Who does what: the local provider creates the job's cgroup (create(), with the limits) before it
 * hands the agent its assignment, and names it there; the agent's job shell joins it before it
 * runs the command (so every process of the job is in it from the first instruction, and the agent
 * itself is not: the limit is the job's, not the job's plus a Node process); the agent reads its OOM
 * kill count when the job ends; the local provider removes it (remove()) when it stops the worker:
 * first SIGKILL to whatever is still in it (even a process that dropped our markers), then rmdir.
 *
 * Where: each controller is found where the machine mounts it (/proc/self/mountinfo): in cgroup v2
 * when the unified hierarchy has it (cgroup.controllers), else in its cgroup v1 hierarchy. A job's
 * group is `<mount>/hodei/<cluster id>/<worker id>` in each hierarchy it needs. v2 needs the
 * controllers enabled down the path (cgroup.subtree_control), which the root and groups of our own
 * allow (no processes live in them). Writing there needs the rights of root or of a delegated
 * subtree: a server that has neither limits nothing.
 *
 * Limits: memory.max (v2) / memory.limit_in_bytes (v1) with swap held to the same total
 * (memory.swap.max 0 / memory.memsw.limit_in_bytes), so a job over its limit is OOM-killed instead
 * of swapping; cpu.max / cpu.cfs_quota_us per 100 ms period. The OOM kill count is memory.events
 * (v2) / memory.oom_control (v1), line `oom_kill N`.
 *
 * When no cgroup can be made, nothing is limited and the job's log and `jobs get` say so. Setrlimit
 * is no substitute and is not used: RLIMIT_AS caps each process's address space, not the memory a
 * job uses (Node, the JVM and Go reserve far more address space than they touch and would fail to
 * start under a tight one, while a job of many processes could use many times the limit), and an
 * allocation over it fails with ENOMEM instead of an OOM kill we could report; RLIMIT_CPU caps CPU
 * seconds in total, not a share of the CPU.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type Controller = "memory" | "cpu";

export interface CgroupLimits {
  cpuMillis: number;
  memoryMb: number;
}

/** What the agent needs of a job's cgroup: it is in the assignment. */
export interface JobCgroup {
  /** cgroup.procs of each hierarchy: the job's shell writes its pid to each before running the command. */
  procs: string[];
  /** The file with the job's `oom_kill N` count; "" when memory is not limited. */
  oomCount: string;
}

interface Home {
  kind: "v1" | "v2";
  /** The hierarchy's mount point. */
  mount: string;
}

const CPU_PERIOD_US = 100_000;
const REMOVE_TRIES = 50;
const REMOVE_WAIT_MS = 20;

export interface LocalCgroupsOptions {
  clusterId: string;
  /** Default /proc/self/mountinfo; tests give a file describing a fake tree. */
  mountinfoPath?: string;
}

export class LocalCgroups {
  private homes: Map<Controller, Home | string> | null = null;

  constructor(private readonly options: LocalCgroupsOptions) {}

  /** Where each controller can be used, or why not (found once, then cached). */
  private find(): Map<Controller, Home | string> {
    if (this.homes) return this.homes;
    const homes = new Map<Controller, Home | string>();
    const mounts = readMounts(this.options.mountinfoPath ?? "/proc/self/mountinfo");
    const v2 = mounts.find((m) => m.fstype === "cgroup2");
    const v2Controllers = v2 ? readText(join(v2.path, "cgroup.controllers")).split(/\s+/) : [];
    for (const controller of ["memory", "cpu"] as const) {
      const v1 = mounts.find((m) => m.fstype === "cgroup" && m.options.split(",").includes(controller));
      const home: Home | undefined = v2 && v2Controllers.includes(controller) ? { kind: "v2", mount: v2.path } : v1 ? { kind: "v1", mount: v1.path } : undefined;
      if (!home) {
        homes.set(controller, `no cgroup hierarchy on this machine has the ${controller} controller (${v2 ? `cgroup v2 at ${v2.path} offers: ${v2Controllers.join(" ") || "none"}` : "no cgroup v2 mount"})`);
        continue;
      }
      const problem = this.prepare(home, controller);
      homes.set(controller, problem ?? home);
    }
    this.homes = homes;
    return homes;
  }

  /** Makes hodei/<cluster> in the hierarchy with the controller enabled for its children; the problem, or null. */
  private prepare(home: Home, controller: Controller): string | null {
    const base = this.baseDir(home);
    try {
      makeDir(join(home.mount, "hodei"));
      makeDir(base);
      if (home.kind === "v2") {
        for (const dir of [home.mount, join(home.mount, "hodei"), base]) {
          if (!readText(join(dir, "cgroup.subtree_control")).split(/\s+/).includes(controller)) writeFileSync(join(dir, "cgroup.subtree_control"), `+${controller}`);
        }
      }
      return null;
    } catch (err) {
      return `cannot make cgroups under ${base} (${home.kind}): ${(err as Error).message}`;
    }
  }

  private baseDir(home: Home): string {
    return join(home.mount, "hodei", this.options.clusterId);
  }

  /** One line for the provider's health: which limits this machine lets local jobs have. */
  describe(): string {
    const homes = this.find();
    return (["memory", "cpu"] as const)
      .map((c) => {
        const home = homes.get(c)!;
        return typeof home === "string" ? `${c} limits not enforced (${home})` : `${c} limits by cgroup ${home.kind}`;
      })
      .join("; ");
  }

  /**
   * Makes the job's cgroup with its limits. Never throws: what could not be limited is said in
   * `applied`, and `cgroup` is null when nothing is limited (no limit asked, or none possible).
   */
  create(workerId: string, limits: CgroupLimits): { cgroup: JobCgroup | null; applied: string } {
    const wanted: [Controller, number][] = [];
    if (limits.memoryMb > 0) wanted.push(["memory", limits.memoryMb]);
    if (limits.cpuMillis > 0) wanted.push(["cpu", limits.cpuMillis]);
    if (wanted.length === 0) return { cgroup: null, applied: "" };
    const homes = this.find();
    const procs = new Set<string>();
    let oomCount = "";
    const notes: string[] = [];
    for (const [controller, amount] of wanted) {
      const what = controller === "memory" ? `memory ${amount} MiB` : `cpu ${amount / 1000}`;
      const home = homes.get(controller)!;
      if (typeof home === "string") {
        notes.push(`${what}: NOT enforced: ${home}; the job may use all of this machine's ${controller}`);
        continue;
      }
      const dir = join(this.baseDir(home), workerId);
      try {
        makeDir(dir);
        if (controller === "memory") oomCount = writeMemoryLimit(home, dir, amount);
        else writeCpuLimit(home, dir, amount);
        procs.add(join(dir, "cgroup.procs"));
        notes.push(`${what}: enforced by the job's own cgroup (${home.kind}) ${dir}${controller === "memory" ? ", swap included" : ""}`);
      } catch (err) {
        notes.push(`${what}: NOT enforced: cannot set it on ${dir}: ${(err as Error).message}`);
      }
    }
    const cgroup = procs.size > 0 ? { procs: [...procs], oomCount } : null;
    return { cgroup, applied: `${notes.join("; ")}; the agent itself is not counted` };
  }

  /** The job's cgroup directories that exist (one per hierarchy). */
  private dirsOf(workerId: string): string[] {
    const homes = this.homes ?? this.find();
    const dirs = new Set<string>();
    for (const home of homes.values()) if (typeof home !== "string") dirs.add(join(this.baseDir(home), workerId));
    return [...dirs].filter((dir) => existsSync(dir));
  }

  /**
   * Removes the job's cgroup: SIGKILL to every process still in it, then rmdir (which the kernel
   * refuses while a process is in it). Idempotent. Throws when it still holds processes after a
   * second: the worker's destroy is then retried.
   */
  async remove(workerId: string): Promise<void> {
    for (const dir of this.dirsOf(workerId)) {
      for (let i = 0; ; i++) {
        for (const pid of readPids(dir)) trySignalKill(pid);
        try {
          rmdirSync(dir);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "ENOENT") break;
          if (i >= REMOVE_TRIES) throw new Error(`local: cannot remove the job's cgroup ${dir}: ${(err as Error).message}`, { cause: err });
          await new Promise((resolve) => setTimeout(resolve, REMOVE_WAIT_MS));
        }
      }
    }
  }

  /** Removes this cluster's own parent groups when no job's group is left in them (on close). */
  removeEmptyBase(): void {
    for (const home of this.homes?.values() ?? []) {
      if (typeof home === "string") continue;
      try {
        rmdirSync(this.baseDir(home));
      } catch {
        // A job's group is still there (it keeps running), or it is gone already.
      }
    }
  }

  /**
   * Removes the empty cgroups of this cluster whose worker has no work directory left (a start
   * that failed half-way, a control plane that died before its stop finished). rmdir of a cgroup
   * with a process in it fails, so a live job's cgroup is never removed.
   */
  sweep(hasWorkDir: (workerId: string) => boolean): void {
    const homes = this.homes;
    if (!homes) return; // never used by this process: nothing to sweep that it knows of
    for (const home of homes.values()) {
      if (typeof home === "string") continue;
      let names: string[];
      try {
        names = readdirSync(this.baseDir(home), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
      } catch {
        continue;
      }
      for (const name of names) {
        if (hasWorkDir(name)) continue;
        try {
          rmdirSync(join(this.baseDir(home), name));
        } catch {
          // Busy (a process in it) or already gone.
        }
      }
    }
  }
}

/** mkdir of one level, fine if it exists (no recursive mkdir: a mount that refuses oddly must fail, not loop). */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
}

function writeMemoryLimit(home: Home, dir: string, memoryMb: number): string {
  const bytes = String(memoryMb * 1024 * 1024);
  if (home.kind === "v2") {
    writeFileSync(join(dir, "memory.max"), bytes);
    if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
    return join(dir, "memory.events");
  }
  writeFileSync(join(dir, "memory.limit_in_bytes"), bytes);
  // memsw (RAM + swap) must be at least the RAM limit: set after it. Absent without swap accounting.
  if (existsSync(join(dir, "memory.memsw.limit_in_bytes"))) writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), bytes);
  return join(dir, "memory.oom_control");
}

function writeCpuLimit(home: Home, dir: string, cpuMillis: number): void {
  const quotaUs = String(Math.max(1000, Math.round((cpuMillis * CPU_PERIOD_US) / 1000)));
  if (home.kind === "v2") {
    writeFileSync(join(dir, "cpu.max"), `${quotaUs} ${CPU_PERIOD_US}`);
    return;
  }
  writeFileSync(join(dir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
  writeFileSync(join(dir, "cpu.cfs_quota_us"), quotaUs);
}

interface Mount {
  path: string;
  fstype: string;
  /** Super options: which v1 controllers a cgroup mount carries (rw,memory / rw,cpu,cpuacct). */
  options: string;
}

/** The cgroup mounts of /proc/self/mountinfo: `id parent dev root mountpoint opts [tags] - fstype source superopts`. */
function readMounts(path: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of readText(path).split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const [fstype, , superOptions = ""] = right.split(" ");
    if (fstype !== "cgroup" && fstype !== "cgroup2") continue;
    mounts.push({ path: unescapeMount(left.split(" ")[4] ?? ""), fstype, options: superOptions });
  }
  return mounts;
}

/** mountinfo escapes spaces and the like as \\040. */
function unescapeMount(path: string): string {
  return path.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "";
  }
}

function readPids(dir: string): number[] {
  return readText(join(dir, "cgroup.procs"))
    .split("\n")
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid);
}

function trySignalKill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}

/** `oom_kill N` from memory.events (v2) or memory.oom_control (v1); 0 when unreadable. Shared with tests. */
export function readOomKills(file: string): number {
  const match = /^oom_kill (\d+)$/m.exec(readText(file));
  return match ? Number(match[1]) : 0;
}
