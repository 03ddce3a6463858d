/**
 * The client API (hodei.v1.JobService): submit, get, list, cancel, logs, workers, tokens, providers.
 * Served as gRPC, gRPC-Web and Connect JSON from these same handlers.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ConflictError, InvalidInputError, NotFoundError, withTimeout } from "../core/errors.js";
import { newId } from "../core/ids.js";
import { isJobState, isTerminal, type JobState } from "../core/job-state.js";
import { validateJobSpec } from "../core/job-spec.js";
import { LIVE_WORKER_STATES } from "../core/worker-state.js";
import {
  JobService,
  type LogEntry,
  LogEntrySchema,
  ListJobsResponseSchema,
  ListProvidersResponseSchema,
  ListTokensResponseSchema,
  ListWorkersResponseSchema,
  ProviderSchema,
  SubmitJobResponseSchema,
} from "../gen/hodei/v1/api_pb.js";
import type { ProviderSlot } from "../scheduler/reconciler.js";
import { toJob, toOtpToken, toWorker } from "./api-mapping.js";
import type { ServiceDeps } from "./service-deps.js";

export interface JobServiceDeps extends ServiceDeps {
  providers: Map<string, ProviderSlot>;
  defaultProvider: string;
  defaultTimeoutSeconds: number;
  workerUrlWarning: (provider: string, url: string) => string;
}

const LOG_PAGE = 500;
/** Entries of ListJobs' states filter, counted after splitting on commas. */
const MAX_STATE_FILTERS = 32;
/** Followers re-read the database at least this often, notification or not. */
const FOLLOW_POLL_MS = 1000;

function encodePageToken(createdAt: number, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString("base64url");
}

function decodePageToken(token: string): { createdAt: number; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(token, "base64url").toString()) as [number, string];
    if (typeof createdAt === "number" && typeof id === "string") return { createdAt, id };
  } catch {
    // Fall through to the error below.
  }
  throw new InvalidInputError("pageToken: not a token returned by ListJobs", "pageToken");
}

export function createJobService(deps: JobServiceDeps): ServiceImpl<typeof JobService> {
  const { store, clock } = deps;

  async function loadJob(id: string) {
    if (!id) throw new InvalidInputError("id: required", "id");
    const job = await store.getJob(id);
    if (!job) throw new NotFoundError(`job ${id} not found`);
    return toJob(job, await store.listWorkersOfJob(id));
  }

  return {
    async submitJob(req) {
      const spec = validateJobSpec(
        {
          command: req.command,
          script: req.script,
          provider: req.provider,
          env: req.env,
          timeoutSeconds: req.timeoutSeconds,
          labels: req.labels,
          maxAttempts: req.maxAttempts,
          image: req.image,
          idempotencyKey: req.idempotencyKey,
          cpuMillis: req.resources?.cpuMillis ?? 0,
          memoryMb: req.resources?.memoryMb ?? 0,
        },
        { provider: deps.defaultProvider, timeoutSeconds: deps.defaultTimeoutSeconds, providers: [...deps.providers.keys()] },
      );
      const row = await store.insertJob(newId(), spec, clock.nowMs());
      deps.metrics.jobsSubmitted.inc({ provider: row.provider });
      deps.log.info({ jobId: row.id, provider: row.provider }, "job submitted");
      deps.reconciler.nudge();
      return create(SubmitJobResponseSchema, { job: toJob(row, []) });
    },

    async getJob(req) {
      return loadJob(req.id);
    },

    async listJobs(req) {
      const states = parseStateFilter(req.states);
      if (req.limit < 0 || req.limit > 500) throw new InvalidInputError("limit: between 1 and 500", "limit");
      const limit = req.limit || 50;
      const rows = await store.listJobs({
        states,
        provider: req.provider || undefined,
        limit: limit + 1,
        before: req.pageToken ? decodePageToken(req.pageToken) : undefined,
      });
      const page = rows.slice(0, limit);
      const jobs = await Promise.all(page.map(async (row) => toJob(row, await store.listWorkersOfJob(row.id))));
      const last = page.at(-1);
      return create(ListJobsResponseSchema, {
        jobs,
        nextPageToken: rows.length > limit && last ? encodePageToken(last.created_at, last.id) : "",
      });
    },

    async cancelJob(req) {
      const current = await loadJob(req.id);
      if (current.state === "canceled") return current;
      if (isTerminal(current.state as JobState)) throw new ConflictError(`job ${req.id} already ${current.state}; nothing to cancel`);
      const now = clock.nowMs();
      const row = await store.transitionJob(req.id, "canceled", now, { reason: "canceled by user", finished_at: now });
      if (!row) return cancelRaceResult(req.id);
      for (const worker of await store.listWorkersOfJob(req.id)) {
        if (worker.state === "registered" || worker.state === "running") {
          deps.sessions.cancel(worker.id, "canceled by user", deps.stopGraceMs);
          await store.setWorkerFields(worker.id, { stop_deadline_ms: now + deps.stopGraceMs + 3000 });
        } else if (worker.state === "provisioning" || worker.state === "waiting") {
          await store.transitionWorker(worker.id, "destroying", { finished_at: now, failure_reason: "canceled by user" });
        }
      }
      deps.metrics.jobsFinished.inc({ provider: row.provider, state: "canceled" });
      deps.log.info({ jobId: req.id }, "job canceled");
      deps.logHub.notify(req.id);
      deps.reconciler.nudge();
      return loadJob(req.id);
    },

    async *getLogs(req, ctx: HandlerContext) {
      if (!req.jobId) throw new InvalidInputError("jobId: required", "jobId");
      if (!(await store.getJob(req.jobId))) throw new NotFoundError(`job ${req.jobId} not found`);
      let cursor = Number(req.afterCursor);
      for (;;) {
        const rows = await store.readLogs(req.jobId, cursor, LOG_PAGE);
        for (const row of rows) {
          cursor = row.id;
          yield toLogEntry(row);
        }
        if (rows.length === LOG_PAGE) continue;
        if (!req.follow) return;
        // Finished when the job is final and no worker of it can still send output.
        const job = await store.getJob(req.jobId);
        const workers = await store.listWorkersOfJob(req.jobId);
        const isDone = job && isTerminal(job.state) && workers.every((w) => w.state === "destroying" || w.state === "destroyed");
        if (isDone) {
          for (const row of await store.readLogs(req.jobId, cursor, 1_000_000)) yield toLogEntry(row);
          return;
        }
        if (ctx.signal.aborted) return;
        await deps.logHub.wait(req.jobId, FOLLOW_POLL_MS, ctx.signal);
      }
    },

    async listWorkers(req) {
      const rows = await store.listWorkers(req.all ? null : LIVE_WORKER_STATES, req.limit > 0 ? Math.min(req.limit, 1000) : 200);
      return create(ListWorkersResponseSchema, { workers: rows.map(toWorker) });
    },

    async listTokens(req) {
      const rows = await store.listTokens(req.limit > 0 ? Math.min(req.limit, 1000) : 50);
      const now = clock.nowMs();
      return create(ListTokensResponseSchema, { tokens: rows.map((t) => toOtpToken(t, now)) });
    },

    async listProviders() {
      const live = await store.countLiveWorkersByProvider();
      const providers = await Promise.all(
        [...deps.providers].map(async ([name, slot]) => {
          const health = await withTimeout(slot.provider.health(), 5000, `${name} health`).catch((err: Error) => ({ healthy: false, detail: err.message }));
          return create(ProviderSchema, {
            name,
            isDefault: name === deps.defaultProvider,
            healthy: health.healthy,
            detail: health.detail,
            maxWorkers: slot.maxWorkers,
            activeWorkers: live.get(name) ?? 0,
            orphans: health.healthy ? await countOrphans(slot) : 0,
            workerServerUrl: slot.workerServerUrl,
            workerServerUrlWarning: deps.workerUrlWarning(name, slot.workerServerUrl),
          });
        }),
      );
      return create(ListProvidersResponseSchema, { providers });
    },
  };

  /** Labelled resources of the provider with no live worker row: what the reaper will remove. */
  async function countOrphans(slot: ProviderSlot): Promise<number> {
    const resources = await withTimeout(slot.provider.list(), 5000, "list").catch(() => []);
    let orphans = 0;
    for (const resource of resources) {
      const worker = await store.getWorker(resource.workerId);
      if (!worker || worker.state === "destroyed" || (worker.provider_resource_id !== null && worker.provider_resource_id !== resource.resourceId)) orphans++;
    }
    return orphans;
  }

  async function cancelRaceResult(id: string) {
    const job = await loadJob(id);
    if (job.state === "canceled") return job;
    throw new ConflictError(`job ${id} already ${job.state}; nothing to cancel`);
  }
}

/**
 * The states filter: entries may be repeated or comma-separated ("running,queued"). At most
 * MAX_STATE_FILTERS entries are read (each becomes a query parameter), duplicates are dropped.
 */
export function parseStateFilter(entries: string[]): JobState[] {
  const tooMany = () => new InvalidInputError(`states: at most ${MAX_STATE_FILTERS} entries; there are only 7 states`, "states");
  // Checked before splitting too, so that a million entries cost no more than a comparison.
  if (entries.length > MAX_STATE_FILTERS) throw tooMany();
  const split = entries.flatMap((s) => s.split(",", MAX_STATE_FILTERS + 1));
  if (split.length > MAX_STATE_FILTERS) throw tooMany();
  const states = new Set<JobState>();
  for (const entry of split) {
    const state = entry.trim();
    if (!state) continue;
    if (!isJobState(state)) {
      const shown = state.length > 40 ? `${state.slice(0, 40)}...` : state;
      throw new InvalidInputError(`states: unknown state "${shown}"; use queued, provisioning, running, succeeded, failed, canceled or timed_out`, "states");
    }
    states.add(state);
  }
  return [...states];
}

function toLogEntry(row: { id: number; attempt: number; seq: number; stream: string; data: string; time_ms: number }): LogEntry {
  return create(LogEntrySchema, {
    attempt: row.attempt,
    seq: BigInt(row.seq),
    stream: row.stream,
    data: row.data,
    time: timestampFromMs(Number(row.time_ms)),
    cursor: BigInt(row.id),
  });
}
