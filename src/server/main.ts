/**
 * The control plane's composition root: reads the configuration, opens the store, creates the
 * providers, the reconcile loop and the services, and serves them on one port (or two, with
 * HODEI_WORKER_PORT: the worker API on its own port), over TLS when HODEI_TLS_CERT is set. SIGTERM or
 * SIGINT stops it cleanly; running workers keep running and reconnect when a server is back.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import http from "node:http";
import type http2 from "node:http2";
import { join } from "node:path";
import type { LogConfig } from "kysely";
import pino, { type Logger } from "pino";
import { isLoopbackHost, packageRoot, parseServerConfig, type ServerConfig } from "../config.js";
import { abortAfter } from "../core/abort.js";
import { systemClock } from "../core/clock.js";
import { newId } from "../core/ids.js";
import { JobService, KeyService, ScheduleService } from "../gen/hodei/v1/api_pb.js";
import { WorkerService } from "../gen/hodei/v1/worker_pb.js";
import { createMetrics } from "../metrics.js";
import { LocalProvider } from "../providers/local.js";
import { localSnapshotFor } from "../providers/agent-runtime.js";
import type { WorkerProvider } from "../providers/provider.js";
import { openJobTrace } from "../scheduler/job-trace.js";
import { currentProcessKey } from "../scheduler/process-key.js";
import { type ProviderSlot, Reconciler } from "../scheduler/reconciler.js";
import { resolveClusterId } from "../store/cluster-id.js";
import { openDatabase } from "../store/database.js";
import { redactDatabaseUrl } from "../store/database-url.js";
import { Store } from "../store/store.js";
import { SecretBox } from "../core/secret-box.js";
import { ensureAdminKey } from "./admin-key.js";
import { agentEnvOf } from "./agent-env.js";
import { authInterceptor } from "./authentication.js";
import { StartupError } from "../core/errors.js";
import { loadDashboard } from "./dashboard.js";
import { errorInterceptor } from "./error-interceptor.js";
import { createJobService } from "./job-service.js";
import { createKeyService } from "./key-service.js";
import { createScheduleService } from "./schedule-service.js";
import { type Listener, listen } from "./listener.js";
import { guardLoopbackHost } from "./host-guard.js";
import { LogHub } from "./log-hub.js";
import { DatabaseReadiness } from "./readiness.js";
import { refuseService } from "./refused-services.js";
import { RegisterLimiter } from "./register-limiter.js";
import { bidiStreamingPaths, createRpcHandler } from "./rpc-adapter.js";
import { loadSecretKey } from "./secret-key.js";
import { loadServerTls, tlsUrlWarning } from "./tls-files.js";
import { createWorkerService, SessionRegistry } from "./worker-service.js";

export interface RunningServer {
  port: number;
  /** The worker API's port: HODEI_WORKER_PORT's, else the same as port. */
  workerPort: number;
  log: Logger;
  /** http:// or, with TLS, https:// */
  url: string;
  config: ServerConfig;
  /** Decided once the database is open (store/cluster-id.ts). */
  clusterId: string;
  stop(): Promise<void>;
}

/**
 * What a benchmark (bench/control-plane-server.ts) or a test injects into an otherwise real server.
 * `hodei server` passes none.
 */
export interface ServerHooks {
  /** These providers instead of the configured ones (HODEI_PROVIDERS is then ignored), by name. */
  providers?: Map<string, { provider: WorkerProvider; maxWorkers: number }>;
  /** Kysely's log option for the database: the bench counts and times every statement. */
  databaseLog?: LogConfig;
  /**
   * An OpenTelemetry SpanProcessor that records job traces instead of the OTLP exporter (tests: an
   * in-memory exporter), whether or not OTEL_EXPORTER_OTLP_ENDPOINT is set.
   */
  spanProcessor?: unknown;
  /** The time limit of the default worker image's build at start (tests), ms. Default IMAGE_BUILD_LIMIT_MS. */
  imageBuildLimitMs?: number;
}

/** How long the start waits for the default worker image's build (about 2 s here) before going on without it. */
const IMAGE_BUILD_LIMIT_MS = 120_000;

/** Bytes of log lines kept while stdout refuses them (a full disk); beyond that new lines are dropped. */
const LOG_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * stdout, as pino's default destination, except that a failed write is not the end of the server:
 * pino handles EPIPE only and re-emits any other error (ENOSPC on a full disk) where nobody listens.
 * The lines wait, up to LOG_BUFFER_BYTES, and are written once writes succeed again. While writes
 * fail, the flush at exit is skipped: sonic-boom's retries a failing write for ever, so the process
 * would never exit.
 */
function logDestination(): pino.DestinationStream {
  const destination = pino.destination({ dest: 1, maxLength: LOG_BUFFER_BYTES });
  const flushSync = destination.flushSync;
  let isFailing = false;
  destination.on("error", () => {
    if (isFailing) return;
    isFailing = true;
    destination.flushSync = () => {};
    destination.once("write", () => {
      isFailing = false;
      destination.flushSync = flushSync;
    });
  });
  return destination;
}

export async function startServer(config: ServerConfig = parseServerConfig(), hooks: ServerHooks = {}): Promise<RunningServer> {
  const log = pino({ level: config.logLevel, base: { service: "hodei" } }, logDestination());
  // Read before anything starts: a bad certificate stops the server with the reason.
  const serverTls = config.tls ? loadServerTls(config.tls) : undefined;
  for (const warning of serverTls?.warnings ?? []) log.warn(warning);
  if (config.unusedTlsCaPath) log.warn("HODEI_TLS_CA is set but TLS is off (HODEI_TLS_CERT and HODEI_TLS_KEY are not): workers are not given it");
  const clock = systemClock;
  // The database, the keys and the local jobs' work directories live here: for this user only.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const dataDirMode = statSync(config.dataDir).mode & 0o777;
  if (dataDirMode & 0o077) {
    log.warn({ path: config.dataDir, mode: dataDirMode.toString(8) }, "the data directory can be read by other users (its database holds jobs' commands, environment and logs): chmod 700 it");
  }
  const { db, kind, isNew, notifier } = await openDatabase(config.databaseUrl, { pool: config.databasePool, notifierLog: log, log: hooks.databaseLog });
  const store = new Store(db, kind, notifier, { webhookUrls: config.webhooks.urls });
  const cluster = await resolveClusterId(store.meta, { override: config.clusterIdOverride, databaseUrl: config.databaseUrl, isNewDatabase: isNew });
  const clusterId = cluster.id;
  if (cluster.replaced) {
    log.warn(
      { clusterId, replacedClusterId: cluster.replaced },
      "HODEI_CLUSTER_ID replaces the cluster id stored in the database; workers labelled with the old id are no longer listed or reaped by this server",
    );
  }
  if (config.isAuthRequired) {
    await ensureAdminKey({ store, clock, log, dataDir: config.dataDir, adminKeyFile: config.adminKeyFile });
  } else {
    log.warn({ host: config.host }, "HODEI_AUTH=off: the client API asks for no key; whoever reaches this address may do anything");
  }
  if (!config.webhooks.secret) log.warn("HODEI_WEBHOOK_SECRET is not set: webhooks (hodei run --notify, HODEI_WEBHOOK_URL) are sent unsigned, so receivers cannot check they come from this server");
  // Before anything is served: a secret key that is unreadable stops the server, naming it.
  const secretBox = new SecretBox(loadSecretKey({ dataDir: config.dataDir, givenKey: config.secretKey, log }));
  const metrics = createMetrics();
  const logHub = new LogHub(store);
  // Several replicas may share the database: a new id per process start, on its machine's node.
  const replica = { replicaId: newId(), nodeId: config.nodeId, processKey: currentProcessKey() };
  log.info(replica, "replica starting");
  const sessions = new SessionRegistry({ store, log });
  const stopFollowingCancels = sessions.followCancels(store.notifier);
  // Off (no OTLP endpoint): a no-op, and no OpenTelemetry module is loaded.
  const trace = await openJobTrace({ config: config.tracing, spanProcessor: hooks.spanProcessor, store, log, replicaId: replica.replicaId });

  // Injected providers (hooks) replace the configured ones: none of those is created then.
  const enabled = hooks.providers ? [] : (config.providers ?? ["local", ...((await dockerDaemonAnswers(config.docker.socketPath)) ? ["docker"] : [])]);
  const providerNames = hooks.providers ? [...hooks.providers.keys()] : enabled;
  const defaultProvider = config.defaultProvider ?? providerNames[0];
  if (!providerNames.includes(defaultProvider)) {
    throw new Error(`invalid configuration: HODEI_DEFAULT_PROVIDER "${defaultProvider}" is not an enabled provider (${providerNames.join(",")})`);
  }
  // Each provider puts agentEnv in its workers' environment (agent-env.ts).
  const agentEnv = agentEnvOf(config, serverTls?.caPem);
  const providers = new Map<string, ProviderSlot>();
  /** Worker-facing URL per provider, when configured (else derived from the listening address). */
  const workerUrls = new Map<string, string | undefined>();
  let local: LocalProvider | undefined;
  /** Docker's warm pool starts once its worker-facing URL is known (local's fills on first use). */
  let startDockerPool: ((workerServerUrl: string) => void) | undefined;
  if (enabled.includes("local")) {
    local = new LocalProvider({
      clusterId,
      agentPath: config.local.agentPath,
      nodePath: config.local.nodePath,
      // The build's snapshot of the agent, when this node built it (else agents run agent.cjs).
      snapshotBlob: localSnapshotFor(config.local.agentPath, config.local.nodePath),
      workRoot: join(config.dataDir, "work"),
      warmWorkers: config.local.warmWorkers,
      baseEnv: config.local.baseEnv,
      agentEnv,
    });
    local.prepare();
    providers.set("local", { provider: local, maxWorkers: config.local.maxWorkers, workerServerUrl: "" });
    workerUrls.set("local", config.local.workerServerUrl);
  }
  if (enabled.includes("docker")) {
    const { DockerProvider } = await import("../providers/docker.js");
    const { assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } = await import("../providers/docker-image.js");
    // Jobs that name their own image get the agent mounted from here.
    const runtime = await assembleAgentRuntime({
      targetDir: config.docker.runtimeDir,
      nodePath: config.local.nodePath,
      agentPath: config.local.agentPath,
      snapshotEntryPath: join(packageRoot(), "dist", "agent-snapshot.cjs"),
    });
    const docker = new DockerProvider({
      clusterId,
      socketPath: config.docker.socketPath,
      defaultImage: config.docker.image,
      networkMode: config.docker.networkMode,
      runtimeDir: config.docker.runtimeDir,
      agentEnv,
      warmWorkers: config.docker.warmWorkers,
      maxWorkers: config.docker.maxWorkers,
      log: log.child({ provider: "docker" }),
    });
    startDockerPool = (url) => docker.startPool(url);
    if (config.docker.image === DEFAULT_WORKER_IMAGE) {
      // The default image is ours and built locally: keep it in step with this agent (fast when it is).
      // A daemon that answers pings but stalls on images must not hold the server's start for ever.
      const Dockerode = (await import("dockerode")).default;
      const limitMs = hooks.imageBuildLimitMs ?? IMAGE_BUILD_LIMIT_MS;
      const limit = abortAfter(limitMs);
      const image = await buildWorkerImage(new Dockerode({ socketPath: config.docker.socketPath }), { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir, signal: limit.signal })
        .catch((err: Error) => {
          const within = limit.timedOut() ? ` within ${limitMs / 1000} s (the Docker daemon stalled)` : "";
          log.warn({ err }, `could not build the default worker image${within}; docker jobs need it`);
          return null;
        })
        .finally(() => limit.dispose());
      if (image?.built) log.info({ image: image.tag, seconds: image.seconds }, "default worker image built");
    }
    providers.set("docker", { provider: docker, maxWorkers: config.docker.maxWorkers, workerServerUrl: "" });
    workerUrls.set("docker", config.docker.workerServerUrl);
  }
  for (const [name, injected] of hooks.providers ?? []) providers.set(name, { ...injected, workerServerUrl: "" });

  const reconciler = new Reconciler({
    store,
    providers,
    clock,
    log,
    metrics,
    registrationTimeoutMs: config.registrationTimeoutMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    reconcileIntervalMs: config.reconcileIntervalMs,
    orphanGraceMs: config.orphanGraceMs,
    stopGraceMs: config.stopGraceMs,
    agents: sessions,
    retentionMs: config.retentionMs,
    replica,
    leaderLeaseMs: config.leaderLeaseMs,
    scheduleGraceMs: config.scheduleGraceMs,
    trace,
    webhooks: config.webhooks,
  });
  if (enabled.includes("kubernetes")) {
    const k8s = await import("@kubernetes/client-node");
    const { KubernetesProvider } = await import("../providers/kubernetes.js");
    const kubeConfig = new k8s.KubeConfig();
    if (config.kubernetes.kubeconfig) kubeConfig.loadFromFile(config.kubernetes.kubeconfig);
    else kubeConfig.loadFromCluster();
    const namespace = config.kubernetes.namespace ?? kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace ?? "default";
    const kubernetes = new KubernetesProvider({
      clusterId,
      kubeConfig,
      namespace,
      defaultImage: config.kubernetes.image,
      defaultImagePullPolicy: config.kubernetes.imagePullPolicy,
      serviceAccount: config.kubernetes.serviceAccount,
      imagePullSecrets: config.kubernetes.imagePullSecrets,
      nodeSelector: config.kubernetes.nodeSelector,
      tolerations: config.kubernetes.tolerations,
      agentEnv,
      log: log.child({ provider: "kubernetes" }),
    });
    providers.set("kubernetes", { provider: kubernetes, maxWorkers: config.kubernetes.maxWorkers, workerServerUrl: "", pendingTimeoutMs: config.kubernetes.pendingTimeoutMs });
    workerUrls.set("kubernetes", config.kubernetes.workerServerUrl);
  }

  // Providers that can tell when a worker changes nudge the reconcile pass to look at it at once.
  for (const [name, slot] of providers) {
    if (!("onWorkerChange" in slot.provider)) continue;
    slot.provider.onWorkerChange = (resourceId) => {
      store.workers.findActiveByResource(name, resourceId).then(
        (worker) => {
          if (worker) reconciler.suspect(worker.id);
        },
        // A hint only: the next full pass inspects every worker anyway.
        (err: unknown) => log.warn({ err, provider: name, providerResourceId: resourceId }, "could not look up a changed worker"),
      );
    };
  }

  let isServing = false;
  const readiness = new DatabaseReadiness(() => store.ping(), clock, {
    onChange: (answer) => (answer.isReady ? log.info("the database answers again; /readyz is ready") : log.warn({ reason: answer.reason }, "the database does not answer; /readyz is unready")),
  });
  const registerLimiter = new RegisterLimiter(config.registerLimits, clock, log);
  const common = { store, clock, log, metrics, reconciler, logHub, sessions, stopGraceMs: config.stopGraceMs, secretBox };
  const urlWarning = (provider: string, url: string) => workerUrlWarning(provider, url) || tlsUrlWarning(serverTls, url);
  const workerService = createWorkerService({
    ...common,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    registerWaitMs: config.edge.requestTimeoutMs,
    logLimitBytes: config.logLimitBytes,
    registerLimiter,
  });
  const hasWorkerPort = config.workerPort !== undefined;
  let workerListener: Listener | undefined;
  // In this order: the error interceptor maps what authentication throws too. Authentication applies
  // to the client API only; agents authenticate with their OTP token and session.
  const interceptors = [errorInterceptor(log), authInterceptor({ store, clock, log, isRequired: config.isAuthRequired })];
  const handler = createRpcHandler({
    maxMessageBytes: config.edge.maxMessageBytes,
    maxResponseMessageBytes: config.edge.maxResponseMessageBytes,
    interceptors,
    log,
    routes(router) {
      if (hasWorkerPort) {
        refuseService(router, WorkerService, () => `${WorkerService.typeName} is served on the worker port (HODEI_WORKER_PORT, ${workerListener?.port}), not on this one`);
      } else {
        router.service(WorkerService, workerService);
      }
      const jobDeps = { ...common, providers, defaultProvider, defaultTimeoutSeconds: config.jobTimeoutSeconds, workerUrlWarning: urlWarning, defaultQueueTimeoutSeconds: config.queueTimeoutSeconds, isWebhookPrivateAllowed: config.webhooks.isPrivateAllowed };
      router.service(JobService, createJobService(jobDeps));
      router.service(ScheduleService, createScheduleService(jobDeps));
      router.service(KeyService, createKeyService(common));
    },
    fallback(req, res) {
      void serveHttp(req, res as unknown as http.ServerResponse).catch((err: unknown) => {
        // A probe or /metrics that failed still answers (a scraper must not hang on it).
        log.error({ err, path: req.url }, "plain HTTP request failed");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error\n");
      });
    },
  });
  /** With HODEI_WORKER_PORT: the worker API alone; the client API and plain HTTP are refused there. */
  const workerHandler = !hasWorkerPort
    ? undefined
    : createRpcHandler({
        maxMessageBytes: config.edge.maxMessageBytes,
        maxResponseMessageBytes: config.edge.maxResponseMessageBytes,
        // Only the worker API is served here (agents have their own authentication): the client API
        // is refused whoever asks, so no API key is asked for first.
        interceptors: [errorInterceptor(log)],
        log,
        routes(router) {
          router.service(WorkerService, workerService);
          refuseService(router, JobService, () => `this is the worker port (HODEI_WORKER_PORT): ${JobService.typeName} is served on HODEI_PORT (${listener.port})`);
          refuseService(router, ScheduleService, () => `this is the worker port (HODEI_WORKER_PORT): ${ScheduleService.typeName} is served on HODEI_PORT (${listener.port})`);
        },
        fallback(_req, res) {
          res.writeHead(404, { "content-type": "application/json" });
          res.end(JSON.stringify({ code: "not_found", message: `this is the worker port (HODEI_WORKER_PORT): it serves ${WorkerService.typeName} only; the API, /healthz, /readyz and /metrics are on HODEI_PORT (${listener.port})` }));
        },
      });

  const dashboard = loadDashboard(join(packageRoot(), "dist", "dashboard"));
  if (!dashboard.isBuilt) log.warn("the dashboard is not built (dist/dashboard): / says so; npm run build builds it");
  async function serveHttp(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") return send(isServing ? 200 : 503, "text/plain", isServing ? "ok\n" : "starting\n");
    if (path === "/readyz") {
      const database = await readiness.check();
      // Why stays in the server's log: the probe is open to anyone, and the reason may name hosts and users.
      if (!database.isReady) return send(503, "text/plain", "database unavailable (the server's log says why)\n");
      return send(isServing ? 200 : 503, "text/plain", isServing ? "ready\n" : "starting\n");
    }
    // Open like the probes, for scrapers that hold no API key: counts by provider and state only,
    // never an id, a command, an env value or a key name.
    if (path === "/metrics") return send(200, metrics.registry.contentType, await metrics.registry.metrics());
    // The web dashboard (dist/dashboard) and its client-side routes; any other path stays a 404.
    if (dashboard.serve(req, res, path)) return;
    send(404, "application/json", JSON.stringify({ code: "not_found", message: `no route ${path}; the API is at /hodei.v1.JobService/<Method>` }));
  }

  // Both ports get the same limits, timeouts and TLS.
  const listenOptions = {
    host: config.host,
    limits: { ...config.edge, longLivedPaths: bidiStreamingPaths([WorkerService, JobService]) },
    log,
    tls: serverTls && { cert: serverTls.cert, key: serverTls.key },
  };
  // Without authentication, on loopback: requests addressed by a name a web page could rebind are refused (host-guard.ts).
  const mainHandler = !config.isAuthRequired && isLoopbackHost(config.host) ? guardLoopbackHost(handler) : handler;
  const listener = await listen(mainHandler, { ...listenOptions, port: config.port, name: "main" });
  if (workerHandler) {
    workerListener = await listen(workerHandler, { ...listenOptions, port: config.workerPort!, name: "worker" }).catch(async (err: unknown) => {
      await listener.close();
      throw err;
    });
  }
  const workerPort = workerListener?.port ?? listener.port;
  const scheme = serverTls ? "https" : "http";
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `${scheme}://${host}:${listener.port}`;
  // The default worker-facing URL: the worker port when there is one; loopback when listening on every address.
  const workerUrl = `${scheme}://${config.host === "0.0.0.0" ? "127.0.0.1" : host}:${workerPort}`;
  for (const [name, slot] of providers) {
    slot.workerServerUrl = workerUrls.get(name) ?? workerUrl;
    const warning = urlWarning(name, slot.workerServerUrl);
    if (warning) log.warn({ provider: name, workerServerUrl: slot.workerServerUrl }, warning);
  }
  startDockerPool?.(providers.get("docker")!.workerServerUrl);
  reconciler.start();
  sessions.start();
  isServing = true;
  log.info(
    {
      port: listener.port,
      workerPort,
      url,
      tls: serverTls ? { workersVerifyWith: serverTls.caPem ? "HODEI_TLS_CA" : "system roots" } : false,
      auth: config.isAuthRequired ? "required" : "off",
      database: redactDatabaseUrl(config.databaseUrl),
      providers: providerNames,
      clusterId,
      clusterIdSource: cluster.source,
      replicaId: replica.replicaId,
      nodeId: replica.nodeId,
    },
    "server listening",
  );

  return {
    port: listener.port,
    workerPort,
    log,
    url,
    config,
    clusterId,
    async stop() {
      // A replica's graceful shutdown: not ready (the Service stops sending it work), no more
      // claims (the pass stops; starts in flight finish and are recorded), the lease and presence
      // row go (another replica leads at once), agents are told to reconnect (through the Service,
      // to another replica, with their session), and in-flight unary calls are waited for briefly
      // by the listeners' close. Its local workers keep running: a replica of the same node (this
      // one restarted, or another) looks after them.
      isServing = false;
      await reconciler.stop();
      stopFollowingCancels();
      logHub.close();
      await reconciler.releaseLeadership().catch((err: unknown) => log.warn({ err }, "could not release the leader lease; it expires on its own"));
      sessions.closeAll("this control plane is shutting down; reconnect (to another replica)");
      registerLimiter.close();
      await Promise.all([listener.close(), workerListener?.close()]);
      for (const slot of providers.values()) await slot.provider.close();
      await trace.close();
      await store.close();
      log.info("server stopped");
    },
  };
}

/** Why a provider's worker-facing URL will likely not work, or "" when it looks fine. */
export function workerUrlWarning(provider: string, url: string): string {
  const host = new URL(url).hostname;
  if (provider !== "kubernetes") return "";
  if (host === "host.docker.internal") {
    return "pods cannot resolve host.docker.internal; set HODEI_K8S_WORKER_SERVER_URL to an address pods can reach (the Service's DNS name, e.g. http://hodei.hodei.svc:7070)";
  }
  if (host === "localhost" || host.startsWith("127.") || host === "[::1]" || host === "::1") {
    return "pods reach the control plane at a loopback address, which works only when pods share this host's network; set HODEI_K8S_WORKER_SERVER_URL to the Service's DNS name";
  }
  return "";
}

/** True when a Docker daemon answers on the socket within timeoutMs. */
function dockerDaemonAnswers(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/_ping", timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

/** How long a stop asked by SIGTERM or SIGINT may take before the process exits anyway, ms. */
const SHUTDOWN_DEADLINE_MS = 25_000;

/** `hodei server`: runs until SIGTERM or SIGINT (a second one, or the deadline, ends it at once). */
export async function runServer(): Promise<void> {
  let config: ServerConfig;
  try {
    config = parseServerConfig();
  } catch (err) {
    process.stderr.write(`hodei: ${(err as Error).message}\n`);
    process.exit(2);
  }
  // Every background task handles its own failure; should one still slip through, it is logged and
  // the server goes on: one failed step never ends the control plane, from the start on (tasks begin
  // before the server listens: the warm pools, the first passes).
  let log: Logger | null = null;
  process.on("unhandledRejection", (reason) => {
    if (log) log.error({ err: reason }, "unhandled rejection (a bug: please report it); the server goes on");
    else process.stderr.write(`hodei: unhandled rejection while starting (a bug: please report it): ${String((reason as Error)?.stack ?? reason)}\n`);
  });
  let server: RunningServer;
  try {
    server = await startServer(config);
  } catch (err) {
    // Something around the server to fix (the database, the port): one line, exit 1.
    if (err instanceof StartupError) {
      process.stderr.write(`hodei: ${err.message}\n`);
      process.exit(1);
    }
    // A setting that proves wrong only once used (a TLS file, the default provider): said like a parse error.
    if (!(err as Error).message?.startsWith("invalid configuration")) throw err;
    process.stderr.write(`hodei: ${(err as Error).message}\n`);
    process.exit(2);
  }
  log = server.log;
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (stopping) {
        server.log.warn({ signal }, "asked again to stop: exiting now");
        process.exit(1);
      }
      stopping = true;
      // A stop that waits on something frozen (the database, a provider's API) still ends, before
      // Kubernetes' default grace of 30 s runs out and it sends SIGKILL.
      setTimeout(() => {
        server.log.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, "the server did not stop in time; exiting");
        process.exit(1);
      }, SHUTDOWN_DEADLINE_MS).unref();
      void server.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          server.log.error({ err }, "the server did not stop cleanly");
          process.exit(1);
        },
      );
    });
  }
}
