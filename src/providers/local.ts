/**
 * LocalProvider: each worker is the agent running as a child process in its own process group,
 * with its own work directory. provider_resource_id is the agent's pid (resource_type process_id).
 *
 * The agent and every process of the job carry marker variables (see process-table.ts), so the
 * worker's whole process tree is found and killed by its markers even after the control plane
 * restarted or the agent died. stop() signals the process groups, waits graceMs, then SIGKILLs.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PermanentError } from "../core/errors.js";
import { findMarkedProcesses, isAlive, type MarkedProcess, readStat } from "./process-table.js";
import type { ProviderHealth, ProviderResource, WorkerProvider, WorkerSpec, WorkerStatus } from "./provider.js";

export interface LocalProviderOptions {
  clusterId: string;
  /** Path of the bundled agent (dist/agent.cjs). */
  agentPath: string;
  /** The node binary that runs the agent. */
  nodePath: string;
  /** Parent of the per-worker work directories. */
  workRoot: string;
  /** Environment every worker starts from (PATH, HOME, ...); never the server's secrets. */
  baseEnv: Record<string, string>;
  /** Extra environment for the agent (timeouts and the like). */
  agentEnv: Record<string, string>;
}

interface Spawned {
  child: ChildProcess;
  workerId: string;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

const POLL_MS = 20;

export class LocalProvider implements WorkerProvider {
  readonly name = "local";
  readonly resourceType = "process_id" as const;
  private readonly spawned = new Map<string, Spawned>(); // by pid
  private readonly byName = new Map<string, string>(); // name -> pid
  /** Called when an agent this process spawned exits, so the reconcile pass can look at once. */
  onWorkerExit: (resourceId: string) => void = () => {};

  constructor(private readonly options: LocalProviderOptions) {}

  async start(spec: WorkerSpec): Promise<ProviderResource> {
    const existing = this.byName.get(spec.name);
    if (existing && isAlive(Number(existing))) {
      return { resourceId: existing, resourceType: "process_id", workerId: spec.workerId, createdAtMs: Date.now() };
    }
    if (!existsSync(this.options.agentPath)) {
      throw new PermanentError(`local: agent bundle not found at ${this.options.agentPath}; run "npm run build"`);
    }
    const workDir = this.workDir(spec.workerId);
    mkdirSync(workDir, { recursive: true });
    const logFd = openSync(join(workDir, ".agent.log"), "a");
    let child: ChildProcess;
    try {
      child = spawn(this.options.nodePath, [this.options.agentPath], {
        cwd: workDir,
        detached: true,
        stdio: ["ignore", logFd, logFd],
        env: {
          ...this.options.baseEnv,
          ...this.options.agentEnv,
          HODEI_MANAGED_BY: "hodei",
          HODEI_CLUSTER_ID: this.options.clusterId,
          HODEI_WORKER_ID: spec.workerId,
          HODEI_WORKER_NAME: spec.name,
          HODEI_JOB_ID: spec.jobId,
          HODEI_ATTEMPT: String(spec.attempt),
          HODEI_SERVER_URL: spec.serverUrl,
          HODEI_OTP_TOKEN: spec.otpToken,
          HODEI_WORK_DIR: workDir,
        },
      });
    } finally {
      closeSync(logFd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once("error", resolve));
      throw new Error(`local: spawn agent for ${spec.name}: ${error.message}`, { cause: error });
    }
    const resourceId = String(pid);
    const entry: Spawned = { child, workerId: spec.workerId };
    this.spawned.set(resourceId, entry);
    this.byName.set(spec.name, resourceId);
    child.once("exit", (code, signal) => {
      entry.exit = { code, signal };
      this.onWorkerExit(resourceId);
    });
    child.unref();
    return { resourceId, resourceType: "process_id", workerId: spec.workerId, createdAtMs: Date.now() };
  }

  async inspect(resourceId: string): Promise<WorkerStatus> {
    const pid = Number(resourceId);
    const entry = this.spawned.get(resourceId);
    if (entry && !entry.exit && !isAlive(pid)) {
      // Dead but not yet reaped (a zombie): its exit status arrives in a moment.
      await this.waitForExit(entry, 1000);
    }
    if (entry?.exit) {
      const { code, signal } = entry.exit;
      return { state: "exited", exitCode: code, reason: signal ? `was killed by ${signal}` : `exited with code ${code}` };
    }
    if (entry && isAlive(pid)) return { state: "running" };
    // Not spawned by this process (the control plane restarted): trust the markers only.
    const agent = findMarkedProcesses(this.options.clusterId).find((p) => p.pid === pid && p.workerPid === pid);
    return agent ? { state: "running" } : { state: "gone" };
  }

  async stop(resourceId: string, graceMs: number): Promise<void> {
    const pid = Number(resourceId);
    const spawned = this.spawned.get(resourceId);
    // An agent that reported its result exits by itself within moments: let it, rather than signal it.
    if (spawned && !spawned.exit) await this.waitForExit(spawned, Math.min(graceMs, 100));
    let targets = this.processesOf(pid);
    const workerIds = new Set(targets.map((p) => p.workerId));
    if (spawned) workerIds.add(spawned.workerId);
    if (targets.length > 0) {
      this.signal(targets, "SIGTERM");
      const deadline = Date.now() + graceMs;
      if (spawned && !spawned.exit) await this.waitForExit(spawned, graceMs);
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
    }
    for (const workerId of workerIds) rmSync(this.workDir(workerId), { recursive: true, force: true });
    this.spawned.delete(resourceId);
    for (const [name, id] of this.byName) if (id === resourceId) this.byName.delete(name);
  }

  async list(): Promise<ProviderResource[]> {
    const byPid = new Map<number, ProviderResource>();
    for (const p of findMarkedProcesses(this.options.clusterId)) {
      const current = byPid.get(p.workerPid);
      if (!current || p.startedAtMs < current.createdAtMs) {
        byPid.set(p.workerPid, { resourceId: String(p.workerPid), resourceType: "process_id", workerId: p.workerId, createdAtMs: p.startedAtMs });
      }
    }
    return [...byPid.values()];
  }

  async health(): Promise<ProviderHealth> {
    if (!existsSync(this.options.agentPath)) return { healthy: false, detail: `agent bundle missing: ${this.options.agentPath}` };
    return { healthy: true, detail: `agent processes on this machine (${this.options.nodePath})` };
  }

  async close(): Promise<void> {}

  private waitForExit(spawned: Spawned, timeoutMs: number): Promise<void> {
    if (spawned.exit) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      spawned.child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private workDir(workerId: string): string {
    return join(this.options.workRoot, workerId);
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
