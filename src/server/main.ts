/**
 * The control plane's composition root: reads the configuration, opens the store, creates the
 * providers, the reconcile loop and the services, and serves them on one port. SIGTERM or SIGINT
 * stops it cleanly; running workers keep running and reconnect when a server is back.
 */
import { existsSync, mkdirSync } from "node:fs";
import http from "node:http";
import type http2 from "node:http2";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { parseServerConfig, type ServerConfig } from "../config.js";
import { systemClock } from "../core/clock.js";
import { JobService } from "../gen/hodei/v1/api_pb.js";
import { WorkerService } from "../gen/hodei/v1/worker_pb.js";
import { createMetrics } from "../metrics.js";
import { LocalProvider } from "../providers/local.js";
import { type ProviderSlot, Reconciler } from "../scheduler/reconciler.js";
import { resolveClusterId } from "../store/cluster-id.js";
import { openDatabase } from "../store/database.js";
import { Store } from "../store/store.js";
import { errorInterceptor } from "./error-interceptor.js";
import { createJobService } from "./job-service.js";
import { listen } from "./listener.js";
import { LogHub } from "./log-hub.js";
import { RegisterLimiter } from "./register-limiter.js";
import { bidiStreamingPaths, createRpcHandler } from "./rpc-adapter.js";
import { createWorkerService, SessionRegistry } from "./worker-service.js";

export interface RunningServer {
  port: number;
  log: Logger;
  url: string;
  config: ServerConfig;
  /** Decided once the database is open (store/cluster-id.ts). */
  clusterId: string;
  stop(): Promise<void>;
}

export async function startServer(config: ServerConfig = parseServerConfig()): Promise<RunningServer> {
  const log = pino({ level: config.logLevel, base: { service: "hodei" } });
  const clock = systemClock;
  mkdirSync(config.dataDir, { recursive: true });
  const { db, kind, isNew } = await openDatabase(config.databaseUrl);
  const store = new Store(db, kind);
  const cluster = await resolveClusterId(store.meta, { override: config.clusterIdOverride, databaseUrl: config.databaseUrl, isNewDatabase: isNew });
  const clusterId = cluster.id;
  if (cluster.replaced) {
    log.warn(
      { clusterId, replacedClusterId: cluster.replaced },
      "HODEI_CLUSTER_ID replaces the cluster id stored in the database; workers labelled with the old id are no longer listed or reaped by this server",
    );
  }
  const metrics = createMetrics();
  const logHub = new LogHub();
  const sessions = new SessionRegistry();

  const enabled = config.providers ?? ["local", ...((await dockerDaemonAnswers(config.docker.socketPath)) ? ["docker"] : [])];
  const defaultProvider = config.defaultProvider ?? enabled[0];
  if (!enabled.includes(defaultProvider)) {
    throw new Error(`invalid configuration: HODEI_DEFAULT_PROVIDER "${defaultProvider}" is not an enabled provider (${enabled.join(",")})`);
  }
  const agentEnv = {
    HODEI_REGISTER_TIMEOUT_MS: String(config.registrationTimeoutMs),
    HODEI_RECONNECT_WINDOW_MS: String(config.reconnectWindowMs),
  };
  const providers = new Map<string, ProviderSlot>();
  /** Worker-facing URL per provider, when configured (else derived from the listening address). */
  const workerUrls = new Map<string, string | undefined>();
  let local: LocalProvider | undefined;
  if (enabled.includes("local")) {
    local = new LocalProvider({
      clusterId,
      agentPath: config.local.agentPath,
      nodePath: config.local.nodePath,
      workRoot: join(config.dataDir, "work"),
      warmWorkers: config.local.warmWorkers,
      baseEnv: config.local.baseEnv,
      agentEnv,
    });
    providers.set("local", { provider: local, maxWorkers: config.local.maxWorkers, workerServerUrl: "" });
    workerUrls.set("local", config.local.workerServerUrl);
  }
  if (enabled.includes("docker")) {
    const { DockerProvider } = await import("../providers/docker.js");
    const { assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } = await import("../providers/docker-image.js");
    // Jobs that name their own image get the agent mounted from here.
    const runtime = await assembleAgentRuntime({ targetDir: config.docker.runtimeDir, nodePath: config.local.nodePath, agentPath: config.local.agentPath });
    const docker = new DockerProvider({
      clusterId,
      socketPath: config.docker.socketPath,
      defaultImage: config.docker.image,
      networkMode: config.docker.networkMode,
      runtimeDir: config.docker.runtimeDir,
      agentEnv,
    });
    if (config.docker.image === DEFAULT_WORKER_IMAGE) {
      // The default image is ours and built locally: keep it in step with this agent (fast when it is).
      const Dockerode = (await import("dockerode")).default;
      const image = await buildWorkerImage(new Dockerode({ socketPath: config.docker.socketPath }), { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir }).catch(
        (err: Error) => {
          log.warn({ err }, "could not build the default worker image; docker jobs need it");
          return null;
        },
      );
      if (image?.built) log.info({ image: image.tag, seconds: image.seconds }, "default worker image built");
    }
    providers.set("docker", { provider: docker, maxWorkers: config.docker.maxWorkers, workerServerUrl: "" });
    workerUrls.set("docker", config.docker.workerServerUrl);
  }

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
      serviceAccount: config.kubernetes.serviceAccount,
      imagePullSecrets: config.kubernetes.imagePullSecrets,
      nodeSelector: config.kubernetes.nodeSelector,
      tolerations: config.kubernetes.tolerations as never,
      agentEnv,
    });
    providers.set("kubernetes", { provider: kubernetes, maxWorkers: config.kubernetes.maxWorkers, workerServerUrl: "" });
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
  const registerLimiter = new RegisterLimiter(config.registerLimits, clock, log);
  const common = { store, clock, log, metrics, reconciler, logHub, sessions, stopGraceMs: config.stopGraceMs };
  const handler = createRpcHandler({
    maxMessageBytes: config.edge.maxMessageBytes,
    maxResponseMessageBytes: config.edge.maxResponseMessageBytes,
    interceptors: [errorInterceptor(log)],
    log,
    routes(router) {
      router.service(WorkerService, createWorkerService({
        ...common,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        heartbeatTimeoutMs: config.heartbeatTimeoutMs,
        logLimitBytes: config.logLimitBytes,
        registerLimiter,
      }));
      router.service(JobService, createJobService({ ...common, providers, defaultProvider, defaultTimeoutSeconds: config.jobTimeoutSeconds, workerUrlWarning }));
    },
    fallback(req, res) {
      void serveHttp(req, res as unknown as http.ServerResponse);
    },
  });

  async function serveHttp(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") return send(isServing ? 200 : 503, "text/plain", isServing ? "ok\n" : "starting\n");
    if (path === "/readyz") {
      try {
        await store.ping();
        return send(isServing ? 200 : 503, "text/plain", isServing ? "ready\n" : "starting\n");
      } catch (err) {
        return send(503, "text/plain", `database unavailable: ${(err as Error).message}\n`);
      }
    }
    if (path === "/metrics") return send(200, metrics.registry.contentType, await metrics.registry.metrics());
    send(404, "application/json", JSON.stringify({ code: "not_found", message: `no route ${path}; the API is at /hodei.v1.JobService/<Method>` }));
  }

  const listener = await listen(handler, {
    port: config.port,
    host: config.host,
    limits: { ...config.edge, longLivedPaths: bidiStreamingPaths([WorkerService, JobService]) },
    log,
  });
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${listener.port}`;
  const loopbackUrl = `http://127.0.0.1:${listener.port}`;
  for (const [name, slot] of providers) {
    slot.workerServerUrl = workerUrls.get(name) ?? (config.host === "0.0.0.0" ? loopbackUrl : url);
    const warning = workerUrlWarning(name, slot.workerServerUrl);
    if (warning) log.warn({ provider: name, workerServerUrl: slot.workerServerUrl }, warning);
  }
  reconciler.start();
  isServing = true;
  log.info(
    { port: listener.port, url, database: config.databaseUrl.replace(/:\/\/[^@]*@/, "://***@"), providers: enabled, clusterId, clusterIdSource: cluster.source },
    "server listening",
  );

  return {
    port: listener.port,
    log,
    url,
    config,
    clusterId,
    async stop() {
      isServing = false;
      await reconciler.stop();
      sessions.closeAll();
      registerLimiter.close();
      await listener.close();
      for (const slot of providers.values()) await slot.provider.close();
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

/** `hodei server`: runs until SIGTERM or SIGINT. */
export async function runServer(): Promise<void> {
  let config: ServerConfig;
  try {
    config = parseServerConfig();
  } catch (err) {
    process.stderr.write(`hodei: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const server = await startServer(config);
  // Every background task handles its own failure; should one still slip through, it is logged and
  // the server goes on: one failed step never ends the control plane.
  process.on("unhandledRejection", (reason) => {
    server.log.error({ err: reason }, "unhandled rejection (a bug: please report it); the server goes on");
  });
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      void server.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}
