/**
 * LocalProvider: each worker is the agent running as a child process in its own process group,
 * with its own work directory. provider_resource_id is the agent's pid (resource_type process_id).
 *
 * Agents are started ahead of need ("warm", HODEI_LOCAL_WARM_WORKERS of them): booting Node and
 * loading the agent take most of a short job's time, so that happens before a job arrives. An idle
 * agent holds no secret and no identity; start() hands one its assignment (OTP token, worker id,
 * work directory) on stdin. That is the only way an agent gets work, with or without a warm one.
 * An idle agent exits when its stdin closes, so idle agents die with the control plane.
 *
 * Finding workers without memory: agents carry HODEI_CLUSTER_ID and HODEI_WARM_ID in their
 * environment; job processes carry HODEI_WORKER_ID and HODEI_WORKER_PID (see process-table.ts).
 * An assigned agent's pid is written to <work dir>/.agent-pid before it gets its assignment, so
 * after a restart list() maps agents back to workers; an agent with no such file is idle.
 * stop() signals the worker's process groups, waits graceMs, then SIGKILLs what is left.
 *
 * Limits: a job that asks for cpu or memory gets a cgroup of its own where this machine allows it
 * (local-cgroup.ts), named in its assignment; its shell joins it, and stop() removes it. Where none
 * can be made, the job runs unlimited and its log and `jobs get` say so (resourcesApplied).
 */
import { randomUUID } from "node:crypto";
import type { EventEmitter } from "node:events";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { PermanentError } from "../core/errors.js";
import { LocalCgroups } from "./local-cgroup.js";
import { AgentLauncher, type LaunchedAgent } from "./local-launcher.js";
import { findMarkedProcesses, isAlive, type MarkedProcess, readStat } from "./process-table.js";
import type { ProviderHealth, ProviderResource, WorkerProvider, WorkerSpec, WorkerStatus } from "./provider.js";

export interface LocalProviderOptions {
  clusterId: string;
  /** Path of the bundled agent (dist/agent.cjs). */
  agentPath: string;
  /** The node binary that runs the agent. */
  nodePath: string;
  /**
   * A startup snapshot of the agent built by nodePath (agent-runtime.ts, localSnapshotFor): agents
   * then start as `node --snapshot-blob <it>`, the bundle already evaluated. None: `node agentPath`.
   */
  snapshotBlob?: string;
  /** Parent of the per-worker work directories. */
  workRoot: string;
  /** Environment every worker starts from (PATH, HOME, ...); never the server's secrets. */
  baseEnv: Record<string, string>;
  /** Extra environment for the agent (timeouts and the like). */
  agentEnv: Record<string, string>;
  /** Idle agents kept booted, ready for the next worker. Default 0. */
  warmWorkers?: number;
  /** Where jobs' cgroups are made; default: this machine's (local-cgroup.ts). */
  cgroups?: LocalCgroups;
  /** The clock that tells a launcher that stopped answering (health); default Date.now. */
  nowMs?: () => number;
}

interface Agent {
  /** Its process, started by the launcher (local-launcher.ts). */
  child: LaunchedAgent;
  warmId: string;
  serverUrl: string;
  logPath: string;
  workerId?: string;
}

const POLL_MS = 20;
/** Delay before a taken warm agent is replaced. */
const REFILL_DELAY_MS = 150;
const AGENT_PID_FILE = ".agent-pid";
/**
 * A launch unanswered this long makes the provider unhealthy: the launcher is stopped (SIGSTOP, a
 * debugger) or starved. Its answer takes a fork and an exec, a few ms; while it stays unhealthy the
 * provision step leaves jobs queued instead of starting workers that cannot start.
 */
export const LAUNCHER_STALL_MS = 5000;

export class LocalProvider implements WorkerProvider {
  readonly name = "local";
  readonly resourceType = "process_id" as const;
  /** Its workers are processes of this machine: only replicas on this node look after them. */
  readonly isNodeBound = true;
  private readonly spawned = new Map<string, Agent>(); // assigned agents, by pid
  private readonly byName = new Map<string, string>(); // worker name -> pid
  private idle: Agent[] = [];
  /** Agents being started for the pool. */
  private filling = 0;
  private isClosed = false;
  private readonly launcher: AgentLauncher;
  /** The last warm pool fill the system refused, for health(); empty once a fill succeeds. */
  private fillError = "";
  /** Called when an agent this process spawned exits, so the reconcile pass can look at once. */
  onWorkerChange: (resourceId: string) => void = () => {};

  private readonly cgroups: LocalCgroups;
  private hasSweptCgroups = false;

  constructor(private readonly options: LocalProviderOptions) {
    this.cgroups = options.cgroups ?? new LocalCgroups({ clusterId: options.clusterId });
    // Runs on the control plane's own node (options.nodePath is the agents', and may be missing).
    this.launcher = new AgentLauncher(process.execPath, (agents) => this.loseAgents(agents), options.nowMs);
  }

  /**
   * Starts the launcher ahead of the first worker (the server does, at startup), so that the first
   * start does not wait for its boot (about 50 ms here). Without it, the first start makes it.
   */
  prepare(): void {
    this.launcher.prepare();
  }

  /** The launcher's pid while it runs (tests). */
  get launcherPid(): number | undefined {
    return this.launcher.pid;
  }

  async start(spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource> {
    if (Object.keys(spec.nodeSelector).length > 0 || spec.tolerations.length > 0) {
      throw new PermanentError("local: a node selector and tolerations place a job on Kubernetes nodes; the local provider runs every job on this machine: submit it to the kubernetes provider, or without them");
    }
    const existing = this.byName.get(spec.name);
    if (existing && isAlive(Number(existing))) {
      const resource: ProviderResource = { resourceId: existing, resourceType: "process_id", workerId: spec.workerId, createdAtMs: Date.now() };
      await spec.onCreated(resource);
      return resource;
    }
    if (!existsSync(this.options.agentPath)) {
      throw new PermanentError(`local: agent bundle not found at ${this.options.agentPath}; run "npm run build"`);
    }
    const agent = this.takeIdle(spec.serverUrl) ?? (await this.spawnAgent(spec.serverUrl, signal));
    if (signal?.aborted) {
      // Its caller has given up (the start's deadline): the agent goes, as an idle one would.
      agent.child.input("");
      throw signal.reason;
    }
    const pid = agent.child.pid;
    const workDir = this.workDir(spec.workerId);
    try {
      mkdirSync(workDir, { recursive: true });
      // Recorded before the agent learns who it is, so a restart can always map it back.
      writeFileSync(join(workDir, AGENT_PID_FILE), String(pid));
    } catch (err) {
      // A full disk, say: this agent is in no map and has no pid file, so nothing would ever reap
      // it. Closing its stdin makes it exit (as an idle agent does).
      agent.child.input("");
      throw new Error(`local: prepare the work directory ${workDir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      renameSync(agent.logPath, join(workDir, ".agent.log"));
    } catch {
      // The log stays where it was; diagnostics only.
    }
    agent.workerId = spec.workerId;
    this.spawned.set(String(pid), agent);
    this.byName.set(spec.name, String(pid));
    // The job's own cgroup, when it asks for limits and this machine allows one (local-cgroup.ts).
    const { cgroup, applied } = this.limitsFor(spec);
    const resource: ProviderResource = { resourceId: String(pid), resourceType: "process_id", workerId: spec.workerId, createdAtMs: Date.now(), resourcesApplied: applied };
    await spec.onCreated(resource);
    const assignment = { otpToken: spec.otpToken, workerId: spec.workerId, workerName: spec.name, jobId: spec.jobId, attempt: spec.attempt, workDir, ...(cgroup ? { cgroup } : {}) };
    agent.child.input(`${JSON.stringify(assignment)}\n`);
    // Refill the pool once this worker is on its way: a new agent's boot (about 120 ms of CPU)
    // would otherwise compete with this worker's registration and run. Measured with the launcher
    // (BENCH_ONLY=throughput, two interleaved runs): hello-world p50 125 and 166 ms refilling at
    // once, 101 and 124 ms after this delay.
    setTimeout(() => this.fillPool(spec.serverUrl), REFILL_DELAY_MS).unref();
    return resource;
  }

  async inspect(resourceId: string): Promise<WorkerStatus> {
    const pid = Number(resourceId);
    const agent = this.spawned.get(resourceId);
    if (agent && !agent.child.exit && !isAlive(pid)) {
      // Dead but not yet reaped (a zombie): its exit status arrives in a moment.
      await waitForExit(agent, 1000);
    }
    if (agent?.child.exit) {
      const { code, signal } = agent.child.exit;
      return { state: "exited", exitCode: code, reason: signal ? `was killed by ${signal}` : `exited with code ${code}` };
    }
    if (agent && isAlive(pid)) return { state: "running" };
    // Not spawned by this process (the control plane restarted): trust the markers only.
    const found = findMarkedProcesses(this.options.clusterId).find((p) => p.pid === pid && p.workerPid === pid);
    return found ? { state: "running" } : { state: "gone" };
  }

  async stop(resourceId: string, graceMs: number): Promise<void> {
    const pid = Number(resourceId);
    const agent = this.spawned.get(resourceId);
    // An agent that reported its result exits by itself within moments: let it, rather than signal it.
    if (agent && !agent.child.exit) await waitForExit(agent, Math.min(graceMs, 100));
    let targets = this.processesOf(pid);
    const workerIds = new Set(targets.map((p) => p.workerId).filter(Boolean));
    if (agent?.workerId) workerIds.add(agent.workerId);
    // An agent this process did not spawn (the control plane restarted): its work directory names it.
    if (!agent?.workerId) for (const [workerId, agentPid] of this.assignedAgentPids()) if (agentPid === pid) workerIds.add(workerId);
    if (targets.length > 0) {
      this.signal(targets, "SIGTERM");
      const deadline = Date.now() + graceMs;
      if (agent && !agent.child.exit) await waitForExit(agent, graceMs);
      targets = this.processesOf(pid);
      while (targets.length > 0 && Date.now() < deadline) {
        await sleep(POLL_MS);
        targets = this.processesOf(pid);
      }
      if (targets.length > 0) {
        this.signal(targets, "SIGKILL");
        for (let i = 0; i < 50 && this.processesOf(pid).length > 0; i++) await sleep(POLL_MS);
        const left = this.processesOf(pid);
        if (left.length > 0) throw new Error(`local: ${left.length} process(es) of worker pid ${pid} survived SIGKILL`);
      }
      // A process in the middle of exiting has already lost its environment (so its markers) but is
      // not yet a zombie: wait the moment it takes, so that "stopped" means gone.
      for (let i = 0; i < 50 && isAlive(pid); i++) await sleep(POLL_MS);
    }
    // The cgroup goes first: if it cannot be removed yet, the work directory (and its pid file) stays for the retry.
    for (const workerId of workerIds) {
      await this.cgroups.remove(workerId);
      // Off the event loop: removing a job's files is filesystem work the control plane need not wait on.
      await rm(this.workDir(workerId), { recursive: true, force: true });
    }
    this.spawned.delete(resourceId);
    for (const [name, id] of this.byName) if (id === resourceId) this.byName.delete(name);
  }

  async list(): Promise<ProviderResource[]> {
    const byPid = new Map<number, ProviderResource>();
    const assigned = new Map([...this.assignedAgentPids()].map(([workerId, pid]) => [pid, workerId]));
    for (const p of findMarkedProcesses(this.options.clusterId)) {
      let workerId = p.workerId;
      if (!workerId) {
        // An agent: assigned ones are mapped by their pid file; one without is idle, not a worker.
        workerId = this.spawned.get(String(p.pid))?.workerId ?? assigned.get(p.pid) ?? "";
        if (!workerId) continue;
      }
      const current = byPid.get(p.workerPid);
      if (!current || p.startedAtMs < current.createdAtMs) {
        byPid.set(p.workerPid, { resourceId: String(p.workerPid), resourceType: "process_id", workerId, createdAtMs: p.startedAtMs });
      }
    }
    return [...byPid.values()];
  }

  async lastOutput(resourceId: string): Promise<string> {
    const workerId = this.spawned.get(resourceId)?.workerId ?? [...this.assignedAgentPids()].find(([, pid]) => String(pid) === resourceId)?.[0];
    if (!workerId) return "";
    try {
      return tail(readFileSync(join(this.workDir(workerId), ".agent.log"), "utf8"), 20);
    } catch {
      return "";
    }
  }

  async health(): Promise<ProviderHealth> {
    if (!existsSync(this.options.agentPath)) return { healthy: false, detail: `agent bundle missing: ${this.options.agentPath}` };
    const waitMs = this.launcher.oldestWaitMs();
    if (waitMs > LAUNCHER_STALL_MS) {
      return { healthy: false, detail: `the agent launcher (pid ${this.launcher.pid}) has not answered a start for ${Math.round(waitMs / 1000)} s: is it stopped?` };
    }
    const start = this.options.snapshotBlob ? `, from ${this.options.snapshotBlob}` : "";
    const lost = this.launcher.lostReason ? `; the launcher was lost (${this.launcher.lostReason}), the next start makes a new one` : "";
    return { healthy: true, detail: `agent processes on this machine (${this.options.nodePath}${start}); ${this.idle.length} warm${this.fillError ? ` (the last refill failed: ${this.fillError})` : ""}${lost}; ${this.cgroups.describe()}` };
  }

  /** Releases idle agents (they exit); assigned agents keep running. */
  async close(): Promise<void> {
    this.isClosed = true;
    this.cgroups.removeEmptyBase();
    for (const agent of this.idle) agent.child.input("");
    this.idle = [];
    this.launcher.close();
  }

  /** The job's cgroup and how its limits apply; leftover cgroups of this cluster are swept first, once. */
  private limitsFor(spec: WorkerSpec): ReturnType<LocalCgroups["create"]> {
    if (spec.cpuMillis <= 0 && spec.memoryMb <= 0) return { cgroup: null, applied: "" };
    const limited = this.cgroups.create(spec.workerId, spec);
    if (!this.hasSweptCgroups) {
      this.hasSweptCgroups = true;
      this.cgroups.sweep((workerId) => existsSync(this.workDir(workerId)));
    }
    return limited;
  }

  // ---- the warm pool ------------------------------------------------------------------------

  private takeIdle(serverUrl: string): Agent | undefined {
    // Agents for another server URL are of no use: release them.
    for (const agent of this.idle.filter((a) => a.serverUrl !== serverUrl)) agent.child.input("");
    // An agent killed from outside is dead in /proc a moment before its exit is reported and
    // handled: handing it a job then would lose that attempt. Its exit removes it for good.
    this.idle = this.idle.filter((a) => a.serverUrl === serverUrl && !a.child.exit && isAlive(a.child.pid));
    return this.idle.shift();
  }

  private fillPool(serverUrl: string): void {
    const wanted = this.options.warmWorkers ?? 0;
    while (!this.isClosed && this.idle.length + this.filling < wanted) void this.addIdleAgent(serverUrl);
  }

  /** One more agent for the pool; never rejects (a refused one is named by health()). */
  private async addIdleAgent(serverUrl: string): Promise<void> {
    this.filling++;
    try {
      const agent = await this.spawnAgent(serverUrl);
      this.fillError = "";
      if (this.isClosed || agent.child.exit) agent.child.input("");
      else this.idle.push(agent);
    } catch (err) {
      // The next start spawns its own agent, and fails with the reason if the system still refuses.
      this.fillError = (err as Error).message;
    } finally {
      this.filling--;
    }
  }

  /**
   * Starts an idle agent through the launcher. The system's refusal to create the process (EAGAIN
   * at the process limit, ENOENT, EACCES) rejects with its reason, and the pool's log file goes.
   * A caller that gives up (signal) gets its abort; an agent that comes after it is released, and
   * its exit removes its log as any idle agent's does.
   */
  private async spawnAgent(serverUrl: string, signal?: AbortSignal): Promise<Agent> {
    const launch = this.launchAgent(serverUrl);
    try {
      return await untilAborted(launch, signal);
    } catch (err) {
      if (signal?.aborted) void launch.then((late) => late.child.input(""), () => {});
      throw err;
    }
  }

  private async launchAgent(serverUrl: string): Promise<Agent> {
    const warmId = randomUUID();
    const poolDir = join(this.options.workRoot, ".pool");
    const logPath = join(poolDir, `${warmId}.log`);
    let child: LaunchedAgent;
    try {
      mkdirSync(poolDir, { recursive: true });
      child = await this.launcher.launch({
        file: this.options.nodePath,
        args: this.options.snapshotBlob ? ["--snapshot-blob", this.options.snapshotBlob] : [this.options.agentPath],
        cwd: this.options.workRoot,
        logPath,
        env: {
          ...this.options.baseEnv,
          ...this.options.agentEnv,
          HODEI_MANAGED_BY: "hodei",
          HODEI_PROVIDER: "local",
          HODEI_CLUSTER_ID: this.options.clusterId,
          HODEI_WARM_ID: warmId,
          HODEI_SERVER_URL: serverUrl,
        },
      });
    } catch (err) {
      removeQuietly(logPath);
      throw new Error(`local: could not start ${this.options.nodePath} ${this.options.agentPath}: ${(err as Error).message}`, { cause: err });
    }
    const agent: Agent = { child, warmId, serverUrl, logPath };
    const exited = () => {
      if (agent.workerId) {
        this.onWorkerChange(String(child.pid));
      } else {
        this.idle = this.idle.filter((a) => a !== agent);
        removeQuietly(logPath);
      }
    };
    // Its exit may be reported before this continuation runs (a line read right after its pid).
    if (child.exit) exited();
    else child.once("exit", exited);
    return agent;
  }

  /**
   * The launcher is gone (killed from outside): the agents it started live on, but their exits
   * will not be reported. Idle ones exit (their stdin closed with it); a worker's agent is then
   * followed by its markers, as after a restart of the control plane.
   */
  private loseAgents(agents: LaunchedAgent[]): void {
    const lost = new Set(agents);
    this.idle = this.idle.filter((a) => !lost.has(a.child));
    for (const agent of agents) {
      if (this.spawned.get(String(agent.pid))?.child === agent) this.spawned.delete(String(agent.pid));
    }
  }

  // ---- helpers --------------------------------------------------------------------------------

  private workDir(workerId: string): string {
    return join(this.options.workRoot, workerId);
  }

  /** worker id -> agent pid, from the pid files of the work directories. */
  private assignedAgentPids(): Map<string, number> {
    const result = new Map<string, number>();
    let names: string[];
    try {
      names = readdirSync(this.options.workRoot);
    } catch {
      return result;
    }
    for (const name of names) {
      if (name.startsWith(".")) continue;
      try {
        result.set(name, Number(readFileSync(join(this.options.workRoot, name, AGENT_PID_FILE), "utf8")));
      } catch {
        // No agent recorded for this directory.
      }
    }
    return result;
  }

  /** The agent (pid) and every job process that names it, in this cluster. */
  private processesOf(pid: number): MarkedProcess[] {
    return findMarkedProcesses(this.options.clusterId).filter((p) => p.workerPid === pid || p.pgid === pid);
  }

  private signal(targets: MarkedProcess[], signal: NodeJS.Signals): void {
    // Never signal our own process group, whatever a marker says.
    const ownGroup = readStat(process.pid)?.pgid;
    const groups = new Set(targets.map((p) => p.pgid).filter((g) => g > 1 && g !== ownGroup));
    for (const pgid of groups) trySignal(-pgid, signal);
    for (const p of targets) trySignal(p.pid, signal);
  }
}

/** Resolves when the agent has exited, or after timeoutMs; leaves no listener on the child either way. */
export function waitForExit(agent: { child: Pick<EventEmitter, "once" | "off"> & { exit?: unknown } }, timeoutMs: number): Promise<void> {
  if (agent.child.exit) return Promise.resolve();
  return new Promise((resolve) => {
    const exited = () => {
      clearTimeout(timer);
      resolve();
    };
    // An agent stuck in the kernel outlives many waits (two per pass): each removes its listener.
    const timer = setTimeout(() => {
      agent.child.off("exit", exited);
      resolve();
    }, timeoutMs);
    agent.child.once("exit", exited);
  });
}

/** The launch, or the abort of the caller that waits for it, whichever comes first. */
function untilAborted<T>(launch: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return launch;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    launch.then(
      (agent) => {
        signal.removeEventListener("abort", onAbort);
        resolve(agent);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/** Removes a log file of the pool's directory; a failure here must not end the control plane. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // Only a log file.
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
