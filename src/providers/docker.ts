/**
 * DockerProvider: one container per attempt on the Docker Engine API (dockerode, over the daemon's
 * socket). provider_resource_id is the full 64-hex container id (resource_type container_id),
 * reported through onCreated between create and start, so it is recorded before the agent can run.
 *
 * Every container is named hodei-worker-<uuid> and carries our labels (managed-by, cluster id, job,
 * attempt, worker); list() finds them by the managed-by and cluster labels only, so two
 * installations sharing a daemon never see each other's containers. Destroy waits a moment for the
 * container to stop by itself (an agent whose result was acknowledged exits at once), then stops it
 * with a grace period if it still runs, then removes it, always by container id; a container that
 * is already gone is not an error.
 *
 * The OTP token never enters the container's configuration (Env, Cmd, Labels: what `docker inspect`
 * shows anyone allowed to read the daemon's state). The container is created with an open stdin that
 * closes after its first attached client (OpenStdin, StdinOnce); start() attaches to that stdin
 * before starting it, writes the assignment (token and worker identity, the JSON line the local
 * provider hands its agents too) once it runs, and closes it. A container can therefore be given one
 * assignment, once: when that client goes away for any reason, the container's stdin is closed for
 * good, and an agent that saw it close without an assignment exits before registering.
 *
 * The agent runs from /opt/hodei in every container: baked into the default worker image, or
 * bind-mounted read-only from the host's agent runtime when a job names another image, so any image
 * with a shell can run jobs. A job's own image is pulled as its pull policy says (docker-pull.ts);
 * the default image is built on this host and never pulled.
 *
 * Warm pool (docker-pool.ts, HODEI_DOCKER_WARM_WORKERS): idle containers of the default image,
 * created with the pool label and a name of their own (hodei-warm-<uuid>), started with our held
 * attachment to their stdin. A job with the default image and no cpu or memory limit takes one:
 * its id is recorded, then the assignment is written to the held attachment while the daemon
 * renames the container to the worker's name (hodei-worker-<uuid>), so list() maps it back to its
 * worker by name (its labels, fixed at create, name no worker). Any other job starts cold.
 *
 * Limits: the job's cpu and memory become the container's NanoCpus and Memory, for the whole
 * worker, its agent (Node, about 40 MiB resident) included. The agent gives the job's processes
 * the highest OOM score, so the kernel kills the job first and the agent reports it (it reads its
 * cgroup's OOM count: Docker's OOMKilled covers the container, not which process). With a limit
 * about the agent's own size the kernel may pick the agent anyway: the container then ends
 * OOMKilled, a permanent failure that says so, without the job's exit code. (The agent's own score
 * is not lowered: runc refuses to start a container with a negative OomScoreAdj on some hosts.)
 */
import { randomUUID } from "node:crypto";
import type { Duplex } from "node:stream";
import Dockerode from "dockerode";
import { abortAfter } from "../core/abort.js";
import { PermanentError, UnavailableError } from "../core/errors.js";
import { AGENT_COMMAND, AGENT_ROOT } from "./docker-image.js";
import { wasOomKilled } from "./docker-oom.js";
import { WarmPool, type WarmContainer } from "./docker-pool.js";
import { ensureImage, inspectImage } from "./docker-pull.js";
import { type ProviderHealth, type ProviderLog, type ProviderResource, stderrLog, type WorkerProvider, type WorkerSpec, type WorkerStatus } from "./provider.js";

export const LABELS = {
  managedBy: "io.hodei.managed-by",
  clusterId: "io.hodei.cluster-id",
  jobId: "io.hodei.job-id",
  attempt: "io.hodei.attempt",
  workerId: "io.hodei.worker-id",
  /** "warm" on containers made for the warm pool (they carry no job, attempt or worker label). */
  pool: "io.hodei.pool",
} as const;

const WORKER_PREFIX = "hodei-worker-";
const WARM_PREFIX = "hodei-warm-";

export interface DockerProviderOptions {
  clusterId: string;
  /** Socket of the Docker daemon. Default /var/run/docker.sock. */
  socketPath: string;
  /** Image of jobs that name none. */
  defaultImage: string;
  /** Docker network mode of workers. Default host. */
  networkMode: string;
  /** Host directory with the agent runtime, mounted at /opt/hodei for images other than the default. */
  runtimeDir: string;
  /** Extra environment for the agent (timeouts and the like). */
  agentEnv: Record<string, string>;
  /** Idle containers of the default image kept ready (startPool). Default 0: none. */
  warmWorkers?: number;
  /** The provider's capacity, which idle containers count against. Default 8. */
  maxWorkers?: number;
  /** Where the warm pool and a failed rename of a taken warm container are reported. Default: stderr. */
  log?: ProviderLog;
  /** How long destroy waits for a container to stop by itself before it stops it, ms. Default SELF_EXIT_WAIT_MS. */
  selfExitWaitMs?: number;
  /** How long one wait on an idle warm container lasts before it is renewed, ms. Default WAIT_RENEW_MS. */
  waitRenewMs?: number;
  /** Injected for tests; made from socketPath otherwise. */
  docker?: Dockerode;
}

const WORK_DIR = "/tmp/hodei-work";
/** Per request; above any stop grace period we use (stop waits that long for the container). */
const REQUEST_TIMEOUT_MS = 120_000;
/**
 * A wait on an idle container is renewed this often, ms: the daemon sends the wait's headers at once
 * and its body only at the exit, and a request cut by the client's own timeout after the headers
 * never settles (docker-modem), so each wait is aborted by us, well before that timeout.
 */
const WAIT_RENEW_MS = 60_000;

/** How long a taken warm container is remembered for a repeated start of its worker, ms (a start's retries end well within it). */
const TAKEN_KEPT_MS = 10 * 60_000;
/**
 * A taken warm container is renamed after its worker this long after its assignment was written,
 * ms: the daemon's rename beside a warm job's registration and run slowed the job (measured, two
 * interleaved rounds of bench/docker-warm.ts: to the result 55.3 and 53.1 ms with it, 51.7 and
 * 41.1 without). Until then list() takes it for an idle container (running, warm-named: nobody's
 * worker and no orphan); a short job's container is often gone by then, and is not renamed.
 */
const RENAME_DELAY_MS = 1000;
/**
 * How long destroy waits for a container to stop by itself before it stops it. An agent whose
 * result was acknowledged exits at once, and the daemon sees it gone 25 to 45 ms later; a stop sent
 * meanwhile (SIGTERM to an agent already leaving) took about 40 ms more on its own.
 */
const SELF_EXIT_WAIT_MS = 100;

export class DockerProvider implements WorkerProvider {
  readonly name = "docker";
  readonly resourceType = "container_id" as const;
  private readonly docker: Dockerode;
  private readonly pool: WarmPool;
  private readonly log: ProviderLog;
  /**
   * Warm containers taken for a worker by this process, by the worker's name: a repeated start of
   * the worker returns the same container. Kept until stopped here, or TAKEN_KEPT_MS at most (a
   * replica that is not the leader never stops the workers it started, so the map must not grow).
   */
  private readonly takenByName = new Map<string, { id: string; atMs: number }>();

  constructor(private readonly options: DockerProviderOptions) {
    this.log = options.log ?? stderrLog("docker");
    // A daemon that accepts connections but never answers must not hang its callers forever.
    this.docker = options.docker ?? new Dockerode({ socketPath: options.socketPath, timeout: REQUEST_TIMEOUT_MS });
    this.pool = new WarmPool({
      size: options.warmWorkers ?? 0,
      maxWorkers: options.maxWorkers ?? 8,
      create: (serverUrl) => this.createWarm(serverUrl),
      attachAndStart: (id) => this.attachAndStart(id, `${WARM_PREFIX}container ${id}`),
      waitExit: (id, signal) => this.waitExit(id, signal),
      countContainers: async () => (await this.listContainers()).length,
      remove: (id) => this.stopAndRemove(id, 0),
      log: this.log,
    });
  }

  /** Starts filling the warm pool (if one is configured) for agents that reach the control plane at serverUrl. */
  startPool(serverUrl: string): void {
    this.pool.start(serverUrl);
  }

  async start(spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource> {
    const image = spec.image || this.options.defaultImage;
    if (Object.keys(spec.nodeSelector).length > 0 || spec.tolerations.length > 0) {
      throw new PermanentError("docker: a node selector and tolerations place a job on Kubernetes nodes; the docker provider runs every job on its own host: submit it to the kubernetes provider, or without them");
    }
    // A warm container runs the default image without limits: only such jobs can take one.
    if (image === this.options.defaultImage && spec.cpuMillis <= 0 && spec.memoryMb <= 0) {
      // A repeat of a warm start in this process (its rename may still be on its way): the same container.
      const taken = this.takenByName.get(spec.name)?.id;
      if (taken) {
        const resource: ProviderResource = { resourceId: taken, resourceType: "container_id", workerId: spec.workerId, createdAtMs: Date.now(), resourcesApplied: "" };
        await spec.onCreated(resource);
        return resource;
      }
      const warm = await this.pool.acquire(spec.serverUrl);
      if (warm) return this.startWarm(warm, spec, signal);
    }
    return this.startCold(spec, image, signal);
  }

  /** Creates the worker's container, records its id, starts it and writes its assignment. */
  private async startCold(spec: WorkerSpec, image: string, signal?: AbortSignal): Promise<ProviderResource> {
    const mountsAgent = image !== this.options.defaultImage;
    // The default worker image is built on this host (hodei image build), never pulled: a missing
    // one is reported by the create below, with how to build it.
    if (mountsAgent) await ensureImage(this.docker, image, spec.pullPolicy, signal);
    let id: string;
    let isFresh = true;
    try {
      const labels = { [LABELS.jobId]: spec.jobId, [LABELS.attempt]: String(spec.attempt), [LABELS.workerId]: spec.workerId };
      const config = this.containerConfig(image, spec.serverUrl, labels);
      config.HostConfig = {
        ...config.HostConfig,
        Memory: spec.memoryMb > 0 ? spec.memoryMb * 1024 * 1024 : undefined,
        NanoCpus: spec.cpuMillis > 0 ? spec.cpuMillis * 1_000_000 : undefined,
        Binds: mountsAgent ? [`${this.options.runtimeDir}:${AGENT_ROOT}:ro`] : undefined,
      };
      const container = await this.pool.createCold(() => this.docker.createContainer({ abortSignal: signal, name: spec.name, ...config }));
      id = container.id;
    } catch (err) {
      const adopted = await this.adoptOrThrow(spec, image, err, signal);
      id = adopted.id;
      isFresh = adopted.status === "created";
    }
    const resource: ProviderResource = { resourceId: id, resourceType: "container_id", workerId: spec.workerId, createdAtMs: Date.now(), resourcesApplied: describeLimits(spec) };
    await spec.onCreated(resource);
    // An adopted container that already started got its one chance at an assignment from the earlier
    // try (StdinOnce): it has it, or saw its stdin close and exits before registering, and the
    // reconcile pass retries the job with a new worker and token. Nothing can be written to it again.
    if (isFresh) await this.startWithAssignment(id, spec, signal);
    return resource;
  }

  /** What every container we create shares: the agent as entrypoint, our labels, stdin for the assignment. */
  private containerConfig(image: string, serverUrl: string, labels: Record<string, string>): Dockerode.ContainerCreateOptions {
    return {
      Image: image,
      Entrypoint: AGENT_COMMAND,
      Cmd: [],
      WorkingDir: "/",
      Env: [
        ...Object.entries(this.options.agentEnv).map(([k, v]) => `${k}=${v}`),
        "HODEI_MANAGED_BY=hodei",
        "HODEI_PROVIDER=docker",
        `HODEI_CLUSTER_ID=${this.options.clusterId}`,
        `HODEI_SERVER_URL=${serverUrl}`,
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      ],
      // The assignment (OTP token included) arrives on stdin, once: see deliverAssignment.
      AttachStdin: true,
      OpenStdin: true,
      StdinOnce: true,
      Labels: { [LABELS.managedBy]: "hodei", [LABELS.clusterId]: this.options.clusterId, ...labels },
      HostConfig: { NetworkMode: this.options.networkMode, Init: true },
    };
  }

  /**
   * Attach to stdin before start (so nothing written is lost), start, write the assignment line,
   * close stdin. Any failure closes the attachment too, so the agent never waits for it forever.
   */
  private async startWithAssignment(id: string, spec: WorkerSpec, signal?: AbortSignal): Promise<void> {
    const stdin = await this.attachAndStart(id, spec.name, signal);
    try {
      await deliverAssignment(stdin, assignmentLine(spec), signal);
    } finally {
      stdin.destroy();
    }
  }

  /** The container's stdin, attached before it starts. A failed start closes the attachment. */
  private async attachAndStart(id: string, name: string, signal?: AbortSignal): Promise<Duplex> {
    const container = this.docker.getContainer(id);
    let stdin: Duplex;
    try {
      stdin = (await container.attach({ stream: true, stdin: true, hijack: true, abortSignal: signal })) as Duplex;
    } catch (err) {
      throw this.wrap(`attach to the stdin of container ${name}`, err);
    }
    // A socket error must never go unhandled (it would end the process); deliverAssignment reports its own.
    stdin.on("error", () => {});
    try {
      await container.start({ abortSignal: signal });
    } catch (err) {
      if (statusOf(err) !== 304) { // 304: already started
        stdin.destroy();
        throw this.wrap(`start container ${name}`, err);
      }
    }
    return stdin;
  }

  /**
   * A warm container becomes the worker: its id recorded (the token is bound to it), the assignment
   * written to the attachment held since it started, and meanwhile the container renamed to the
   * worker's name, so that list() maps it back (its labels, fixed at create, name no worker) and a
   * repeated start finds it by name. The rename is on the daemon, not on the job's path: start()
   * returns once both are done. A rename that fails is logged: the container stays the worker by
   * its id (inspect, stop), and list() takes it for an idle one while it runs, for an orphan after.
   */
  private async startWarm(warm: WarmContainer, spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource> {
    const resource: ProviderResource = { resourceId: warm.id, resourceType: "container_id", workerId: spec.workerId, createdAtMs: Date.now(), resourcesApplied: "" };
    const nowMs = Date.now();
    // Entries are in insertion order: the oldest go first, once past TAKEN_KEPT_MS.
    for (const [name, entry] of this.takenByName) {
      if (nowMs - entry.atMs < TAKEN_KEPT_MS) break;
      this.takenByName.delete(name);
    }
    this.takenByName.set(spec.name, { id: warm.id, atMs: nowMs });
    try {
      await spec.onCreated(resource);
    } catch (err) {
      // Not recorded: nothing may run in it. It goes (the reaper removes it otherwise).
      warm.stdin.destroy();
      await this.stop(warm.id, 0).catch(() => {});
      throw err;
    }
    try {
      await deliverAssignment(warm.stdin, assignmentLine(spec), signal);
    } finally {
      warm.stdin.destroy();
    }
    this.renameLater(warm.id, spec.name);
    return resource;
  }

  /** Names a taken warm container after its worker RENAME_DELAY_MS from now, off the job's path, unless it was stopped here before. */
  private renameLater(id: string, name: string): void {
    const timer = setTimeout(() => {
      if (this.takenByName.get(name)?.id !== id) return; // stopped here already
      this.docker
        .getContainer(id)
        .rename({ name })
        .catch((err: unknown) => {
          // Gone already (its job over, stopped by another replica): nothing to name.
          if ((err as { statusCode?: number }).statusCode === 404) return;
          this.log.warn({ err, containerId: id, name }, "could not rename a taken warm container to its worker's name; it stays the worker by its id");
        });
    }, RENAME_DELAY_MS);
    timer.unref();
  }

  /**
   * Resolves when the container is no longer running. Each wait lasts at most waitRenewMs (see
   * WAIT_RENEW_MS), and is renewed while the container still runs.
   */
  private async waitExit(id: string, signal: AbortSignal): Promise<void> {
    const container = this.docker.getContainer(id);
    for (;;) {
      const renew = abortAfter(this.options.waitRenewMs ?? WAIT_RENEW_MS, signal);
      try {
        await container.wait({ abortSignal: renew.signal });
        return;
      } catch (err) {
        if (signal.aborted) throw err;
        if (statusOf(err) === 404) return;
        const info = await container.inspect({ abortSignal: signal });
        if (!info.State.Running) return;
      } finally {
        renew.dispose();
      }
    }
  }

  /** One idle container for the pool: the default image, our labels and the pool marker, no job. */
  private async createWarm(serverUrl: string): Promise<string> {
    const name = `${WARM_PREFIX}${randomUUID()}`;
    try {
      const container = await this.docker.createContainer({ name, ...this.containerConfig(this.options.defaultImage, serverUrl, { [LABELS.pool]: "warm" }) });
      return container.id;
    } catch (err) {
      if (statusOf(err) === 404) throw new PermanentError(`image ${this.options.defaultImage} not found; build it with "npx hodei image build"`);
      throw this.wrap(`create warm container ${name}`, err);
    }
  }

  async inspect(resourceId: string, signal?: AbortSignal): Promise<WorkerStatus> {
    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(resourceId).inspect({ abortSignal: signal });
    } catch (err) {
      if (statusOf(err) === 404) return { state: "gone" };
      throw this.wrap(`inspect container ${resourceId}`, err);
    }
    const state = info.State;
    if (state.Running || state.Restarting) return { state: "running" };
    if (state.Status === "created") return { state: "pending" };
    // The same job in the same memory would be killed again: no retry. (The job's own processes
    // killed while the agent lives are reported by the agent, which reads its cgroup.)
    if (await wasOomKilled(this.docker, info, signal)) return { state: "exited", exitCode: state.ExitCode, reason: "was killed for running out of memory (OOMKilled: the job needs more than its memory limit)", permanent: true };
    const reason = state.ExitCode === 137 ? "was killed (SIGKILL, exit code 137)" : `exited with code ${state.ExitCode}`;
    return { state: "exited", exitCode: state.ExitCode, reason };
  }

  async stop(resourceId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    await this.stopAndRemove(resourceId, graceMs, signal);
    for (const [name, entry] of this.takenByName) if (entry.id === resourceId) this.takenByName.delete(name);
    // Capacity was freed: the warm pool may grow back into it, off this caller's path.
    this.pool.refillSoon();
  }

  private async stopAndRemove(resourceId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    const container = this.docker.getContainer(resourceId);
    if (!(await this.stoppedWithin(container, Math.min(graceMs, this.options.selfExitWaitMs ?? SELF_EXIT_WAIT_MS), signal))) {
      try {
        await container.stop({ t: Math.ceil(graceMs / 1000), abortSignal: signal });
      } catch (err) {
        const status = statusOf(err);
        if (status !== 304 && status !== 404) throw this.wrap(`stop container ${resourceId}`, err);
      }
    }
    try {
      await container.remove({ force: true, v: true, abortSignal: signal });
    } catch (err) {
      const status = statusOf(err);
      // 404: gone already; 409: removal already in progress (the next pass confirms it is gone).
      if (status !== 404 && status !== 409) throw this.wrap(`remove container ${resourceId}`, err);
    }
  }

  /**
   * True when the container is not running within `ms` (it exited, never started, or is stopping).
   * Anything else (still running, gone, the daemon's error, an abort) is false: stop and remove,
   * which say what is wrong, come next.
   */
  private async stoppedWithin(container: Dockerode.Container, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (ms <= 0) return false;
    const limit = abortAfter(ms, signal);
    try {
      await container.wait({ condition: "not-running", abortSignal: limit.signal });
      return true;
    } catch {
      return false;
    } finally {
      limit.dispose();
    }
  }

  /**
   * Every container of this cluster, mapped to its worker: by its worker label, or, for a warm
   * container that became a worker, by its name (hodei-worker-<worker id>). An idle warm container
   * is nobody's worker: while it runs, a control plane holds its stdin and it is left alone; once
   * it is not running (its control plane let go or died) it is listed with no worker, an orphan.
   */
  async list(signal?: AbortSignal): Promise<ProviderResource[]> {
    const resources: ProviderResource[] = [];
    for (const c of await this.listContainers(signal)) {
      let workerId = c.Labels[LABELS.workerId] ?? "";
      if (!workerId && c.Labels[LABELS.pool]) {
        const name = (c.Names[0] ?? "").replace(/^\//, "");
        if (name.startsWith(WORKER_PREFIX)) workerId = name.slice(WORKER_PREFIX.length);
        else if (c.State === "running") continue;
      }
      resources.push({ resourceId: c.Id, resourceType: "container_id", workerId, createdAtMs: c.Created * 1000 });
    }
    return resources;
  }

  private async listContainers(signal?: AbortSignal): Promise<Dockerode.ContainerInfo[]> {
    try {
      return await this.docker.listContainers({
        abortSignal: signal,
        all: true,
        filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${this.options.clusterId}`] },
      });
    } catch (err) {
      throw this.wrap("list containers", err);
    }
  }

  async lastOutput(resourceId: string, signal?: AbortSignal): Promise<string> {
    try {
      const raw = (await this.docker.getContainer(resourceId).logs({ stdout: true, stderr: true, tail: 20, follow: false, abortSignal: signal })) as unknown as Buffer;
      return demux(raw).trimEnd();
    } catch {
      return "";
    }
  }

  async health(signal?: AbortSignal): Promise<ProviderHealth> {
    try {
      // dockerode supports abortSignal on ping; its types do not say so.
      await (this.docker.ping as (opts: { abortSignal?: AbortSignal }) => Promise<unknown>)({ abortSignal: signal });
    } catch (err) {
      return { healthy: false, detail: `Docker daemon at ${this.options.socketPath} not answering: ${(err as Error).message}` };
    }
    try {
      await inspectImage(this.docker, this.options.defaultImage, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      return { healthy: true, detail: `daemon up; default image ${this.options.defaultImage} missing: run "npx hodei image build"` };
    }
    const warm = this.pool.size > 0 ? `; ${this.pool.idleCount} of ${this.pool.size} warm` : "";
    return { healthy: true, detail: `daemon at ${this.options.socketPath}; image ${this.options.defaultImage}; network ${this.options.networkMode}${warm}` };
  }

  /** Removes the warm pool's idle containers; workers keep running. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /**
   * Create failed: a container of that name from an earlier try is adopted (with its state: only one
   * that never started still needs its assignment); a missing image is permanent.
   */
  private async adoptOrThrow(spec: WorkerSpec, image: string, err: unknown, signal?: AbortSignal): Promise<{ id: string; status: string }> {
    const status = statusOf(err);
    if (status === 409) {
      const existing = await this.docker.getContainer(spec.name).inspect({ abortSignal: signal });
      // Ours by its worker label, or a warm container renamed for this worker by the earlier try.
      const labels = existing.Config.Labels ?? {};
      if (labels[LABELS.workerId] === spec.workerId || (labels[LABELS.pool] && labels[LABELS.clusterId] === this.options.clusterId)) {
        return { id: existing.Id, status: existing.State.Status };
      }
    }
    if (status === 404) {
      const hint = image === this.options.defaultImage ? 'build it with "npx hodei image build"' : "pull or build it on the Docker host";
      throw new PermanentError(`image ${image} not found; ${hint}`);
    }
    throw this.wrap(`create container ${spec.name}`, err);
  }

  /**
   * A failed daemon call as an error that says what failed; one that could not reach the daemon
   * (refused, reset, no socket) is an UnavailableError naming the daemon's socket.
   */
  private wrap(what: string, err: unknown): Error {
    const message = (err as Error).message;
    if (isConnectionError(err)) return new UnavailableError(`Docker daemon at ${this.options.socketPath} not answering: ${what}: ${message}`);
    return new Error(`docker: ${what}: ${message}`, { cause: err });
  }
}

/** How the container's limits apply, for the job's log and `jobs get`; "" when the job asked for none. */
function describeLimits(spec: WorkerSpec): string {
  const parts = [];
  if (spec.cpuMillis > 0) parts.push(`cpu ${spec.cpuMillis / 1000} (NanoCpus)`);
  if (spec.memoryMb > 0) parts.push(`memory ${spec.memoryMb} MiB (Memory; swap as much again, Docker's default)`);
  if (parts.length === 0) return "";
  return `container limits: ${parts.join(", ")}; enforced by Docker for the whole worker, its agent (about 40 MiB) included`;
}

/** Writes `line` and half-closes the attachment: Docker then closes the container's stdin (StdinOnce). */
function deliverAssignment(stdin: Duplex, line: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      cleanup();
      reject(new Error(`docker: write the assignment to the container's stdin: ${err.message}`, { cause: err }));
    };
    const onClose = () => fail(new Error("the attachment closed before the assignment was written"));
    const onAbort = () => fail(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
    const cleanup = () => {
      stdin.off("error", fail);
      stdin.off("close", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    if (signal?.aborted) return onAbort();
    stdin.on("error", fail);
    stdin.on("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
    stdin.end(line, (err?: Error | null) => {
      if (err) return fail(err);
      cleanup();
      resolve();
    });
  });
}

function assignmentLine(spec: WorkerSpec): string {
  const assignment = { otpToken: spec.otpToken, workerId: spec.workerId, workerName: spec.name, jobId: spec.jobId, attempt: spec.attempt, workDir: WORK_DIR };
  return `${JSON.stringify(assignment)}\n`;
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number } | undefined)?.statusCode;
}

function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === "ECONNREFUSED" || code === "ENOENT" || code === "EACCES" || code === "ECONNRESET";
}

/** Docker's multiplexed log format: 8-byte frame headers (stream, 0, 0, 0, size as uint32 BE). */
export function demux(raw: Buffer | string): string {
  if (typeof raw === "string") return raw;
  const parts: string[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const size = raw.readUInt32BE(offset + 4);
    parts.push(raw.subarray(offset + 8, offset + 8 + size).toString("utf8"));
    offset += 8 + size;
  }
  return parts.join("");
}
