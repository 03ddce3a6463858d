/**
 * One control plane replica for the `control_plane` bench section (bench/control-plane.ts), run as
 * a child process: the real server (startServer: its store, reconciler, services and listener) with
 * one provider injected in place of the configured ones (in the slot "local"), whose workers cost nothing to start. Its start() records the
 * provider_resource_id (onCreated, as the Docker provider does) and hands the OTP token over IPC to
 * an agent already running in the bench process, which registers, streams and reports over a real
 * loopback HTTP/2 connection. So every figure is the control plane's own work.
 *
 * Settings come from the environment as for `hodei server` (HODEI_DATABASE_URL, HODEI_PORT, ...),
 * plus BENCH_CP_MAX_WORKERS (the bench provider's capacity). The server's log goes to stdout.
 *
 * IPC, child -> parent:
 *   { type: "ready", url, clusterId }
 *   { type: "token", jobId, workerId, otpToken, serverUrl, claimedAt, provisionedAt }   (start())
 *   { type: "stopped", jobId, workerId, at }                                            (stop())
 *   { type: "stats", ... }                                                               (answer)
 * parent -> child: { type: "stats" } (CPU, event-loop use, statements); { type: "stop" }.
 * Times are performance.timeOrigin + performance.now(): comparable across processes, sub-ms.
 */
import { performance } from "node:perf_hooks";
import type { LogEvent } from "kysely";
import { parseServerConfig } from "../src/config.js";
import type { ProviderResource, WorkerProvider, WorkerSpec, WorkerStatus } from "../src/providers/provider.js";
import { startServer } from "../src/server/main.js";

const at = () => performance.timeOrigin + performance.now();
const send = (message: Record<string, unknown>) => process.send!(message);

/**
 * Workers whose start cost nothing: a row in a map. The agent is already running elsewhere. The map
 * is this process's, so its workers are bound to this replica's node (each replica of the bench
 * has a node id of its own), as local workers are: only this replica inspects, stops and reaps them.
 */
class BenchProvider implements WorkerProvider {
  readonly name = "bench";
  readonly resourceType = "process_id" as const;
  readonly isNodeBound = true;
  private readonly live = new Map<string, ProviderResource & { jobId: string }>();

  async start(spec: WorkerSpec): Promise<ProviderResource> {
    const claimedAt = at();
    const resource = { resourceId: `bench:${spec.workerId}`, resourceType: this.resourceType, workerId: spec.workerId, createdAtMs: Date.now() };
    this.live.set(resource.resourceId, { ...resource, jobId: spec.jobId });
    // As a real provider: the id is recorded before the agent can register with the token.
    await spec.onCreated(resource);
    send({ type: "token", jobId: spec.jobId, workerId: spec.workerId, otpToken: spec.otpToken, serverUrl: spec.serverUrl, claimedAt, provisionedAt: at() });
    return resource;
  }

  async inspect(resourceId: string): Promise<WorkerStatus> {
    return this.live.has(resourceId) ? { state: "running" } : { state: "gone" };
  }

  async stop(resourceId: string): Promise<void> {
    const resource = this.live.get(resourceId);
    if (!resource) return;
    this.live.delete(resourceId);
    send({ type: "stopped", jobId: resource.jobId, workerId: resource.workerId, at: at() });
  }

  async list(): Promise<ProviderResource[]> {
    return [...this.live.values()];
  }

  async health() {
    return { healthy: true, detail: "bench: workers cost nothing" };
  }

  async close(): Promise<void> {}
}

/** Statements by kind ("update workers", "begin", ...), with their count and summed time. */
const statements = new Map<string, { count: number; ms: number }>();
const kindOfSql = new Map<string, string>();
function kindOf(sql: string): string {
  let kind = kindOfSql.get(sql);
  if (kind === undefined) {
    const verb = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? "?";
    const table = /\b(?:from|into|update)\s+"(\w+)"/i.exec(sql)?.[1];
    kind = table ? `${verb} ${table}` : verb;
    if (kindOfSql.size < 10_000) kindOfSql.set(sql, kind);
  }
  return kind;
}
/** BENCH_CP_SQL_DETAIL=1: statements by their SQL text instead (finding the costly one). */
const isDetailed = process.env.BENCH_CP_SQL_DETAIL === "1";
function onQuery(event: LogEvent): void {
  const kind = event.level === "error" ? "error" : isDetailed ? event.query.sql : kindOf(event.query.sql);
  const entry = statements.get(kind) ?? { count: 0, ms: 0 };
  entry.count++;
  entry.ms += event.queryDurationMillis;
  statements.set(kind, entry);
}

const maxWorkers = Number(process.env.BENCH_CP_MAX_WORKERS ?? 128);
const config = parseServerConfig(process.env);
const server = await startServer(config, {
  // Under the name "local" (jobs name no provider; API key scopes know the real providers' names only).
  providers: new Map([["local", { provider: new BenchProvider(), maxWorkers }]]),
  databaseLog: onQuery,
});

process.on("message", (message: { type: string }) => {
  if (message.type === "stats") {
    send({
      type: "stats",
      at: at(),
      cpu: process.cpuUsage(),
      elu: performance.eventLoopUtilization(),
      statements: Object.fromEntries(statements),
    });
  } else if (message.type === "stop") {
    void server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  }
});
process.on("disconnect", () => void server.stop().finally(() => process.exit(0)));
send({ type: "ready", url: server.url, clusterId: server.clusterId });
