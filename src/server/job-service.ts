/**
 * The client API (hodei.v1.JobService): submit, get, list, cancel, logs, workers, tokens, providers,
 * rerun.
 * Served as gRPC, gRPC-Web and Connect JSON from these same handlers. The auth interceptor has
 * checked each call's method rule before it gets here; the rules that need the job (its owner, its
 * provider, who sees env values) are applied here, from access.ts.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ConflictError, InvalidInputError, NotFoundError, toError, withDeadline } from "../core/errors.js";
import { newId } from "../core/ids.js";
import { isJobState, isTerminal, type JobState } from "../core/job-state.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { specHash } from "../core/spec-hash.js";
import { parseTraceparent, type TraceParent, traceOfNewJob } from "../core/trace-context.js";
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
import { SCHEDULE_KEY_PREFIX } from "../core/schedule.js";
import { isOrphan } from "../scheduler/reap.js";
import { submitJob } from "../scheduler/submit.js";
import type { ProviderSlot } from "../scheduler/reconciler.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import { CALLER, type Caller, maySeeEnvValues, requireJobCancel, requireJobRead, requireProvider } from "./access.js";
import { specInputOf, toJob, toOtpToken, toWorker } from "./api-mapping.js";
import { refuseLostSecrets, rerunSpec } from "./rerun.js";
import { parseLabelSelector } from "./label-selector.js";
import type { ServiceDeps } from "./service-deps.js";

export interface JobServiceDeps extends ServiceDeps {
  providers: Map<string, ProviderSlot>;
  defaultProvider: string;
  defaultTimeoutSeconds: number;
  workerUrlWarning: (provider: string, url: string) => string;
  /** Queue timeout of jobs that name none, seconds (HODEI_QUEUE_TIMEOUT). Default 0: they wait for ever. */
  defaultQueueTimeoutSeconds?: number;
  /** Webhook URLs may name private and loopback addresses (HODEI_WEBHOOK_ALLOW_PRIVATE). Default false. */
  isWebhookPrivateAllowed?: boolean;
}

/** ListProviders asks each provider for its health and resources; a call that takes longer is aborted, ms. */
const PROVIDER_QUERY_MS = 5000;
const LOG_PAGE = 500;
/** Entries of ListJobs' states filter, counted after splitting on commas. */
const MAX_STATE_FILTERS = 32;
/**
 * Followers re-read the database at least this often, notification or not: a local append wakes
 * them at once (LogHub), logs received by another replica are seen within this (or sooner, when a
 * hint such as PostgreSQL NOTIFY calls logHub.notify).
 */
const FOLLOW_POLL_MS = 250;
/** A follower checks its API key is still good this often (a revoked key ends it within this), ms. */
const FOLLOW_KEY_CHECK_MS = 1000;

/** ListJobs' query: at most this many characters. */
const MAX_QUERY_CHARS = 200;
/**
 * ListJobs' command search examines at most this many jobs per call (newest first from the page
 * token), so a search costs the same on any size of history; the answer says when it stopped here.
 */
const SEARCH_EXAMINE_LIMIT = 5000;

/** The search text, trimmed and lowercase; "" for none. */
function parseQuery(query: string): string {
  const text = query.trim().toLowerCase();
  if (text.length > MAX_QUERY_CHARS) throw new InvalidInputError(`query: at most ${MAX_QUERY_CHARS} characters (got ${text.length})`, "query");
  return text;
}

/** Whether an id match passes the listing's other filters (checked here: at most `limit` rows). */
function isListed(row: JobRow, filters: { states: JobState[] | undefined; provider?: string; labels: [string, string][] | undefined }): boolean {
  if (filters.states?.length && !filters.states.includes(row.state as JobState)) return false;
  if (filters.provider && row.provider !== filters.provider) return false;
  const labels = JSON.parse(row.labels) as Record<string, string>;
  return (filters.labels ?? []).every(([key, value]) => labels[key] === value);
}

/**
 * The caller's span, parent of the job's trace: the request's traceparent field, checked strictly
 * (a bad one is refused, naming the field), else the HTTP traceparent header when it is valid (an
 * instrumented client sends it on every call; a malformed header is ignored, as W3C Trace Context
 * says a receiver does). Null: none.
 */
function callerTrace(field: string, ctx: HandlerContext): TraceParent | null {
  if (field) return parseTraceparent(field, "traceparent");
  const header = ctx.requestHeader.get("traceparent");
  if (!header) return null;
  try {
    return parseTraceparent(header.trim(), "traceparent");
  } catch {
    return null;
  }
}

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

  async function readJob(id: string): Promise<JobRow> {
    if (!id) throw new InvalidInputError("id: required", "id");
    const job = await store.jobs.get(id);
    if (!job) throw await jobNotFound(id);
    return job;
  }

  /** The job as `caller` may see it; refused when it may not read it. */
  async function loadJob(id: string, caller: Caller) {
    const job = await readJob(id);
    requireJobRead(caller, owner(job));
    return jobSeenBy(caller, job, await store.workers.listOfJob(id));
  }

  /** The API's job of rows already read, as `caller` may see it (with its webhook deliveries once ended). */
  async function jobSeenBy(caller: Caller, job: JobRow, workers: WorkerRow[]) {
    const deliveries = isTerminal(job.state) ? await store.webhooks.listOfJob(job.id) : [];
    return toJob(job, workers, maySeeEnvValues(caller), deliveries);
  }

  /** "Not found", or for a job removed by retention (while its record is kept) exactly that. */
  async function jobNotFound(id: string): Promise<NotFoundError> {
    const removed = await store.retention.getRemoved(id);
    if (!removed) return new NotFoundError(`job ${id} not found`);
    const at = (ms: number) => new Date(ms).toISOString();
    return new NotFoundError(
      `job ${id} was removed by retention at ${at(removed.removed_at)} (it finished at ${at(removed.finished_at)}; finished jobs are kept for HODEI_RETENTION)`,
    );
  }

  return {
    async submitJob(req, ctx) {
      const caller = ctx.values.get(CALLER);
      const spec = validateJobSpec(
        specInputOf(req),
        {
          provider: deps.defaultProvider,
          timeoutSeconds: deps.defaultTimeoutSeconds,
          providers: [...deps.providers.keys()],
          queueTimeoutSeconds: deps.defaultQueueTimeoutSeconds,
          nowMs: clock.nowMs(),
          isWebhookPrivateAllowed: deps.isWebhookPrivateAllowed,
        },
      );
      requireProvider(caller, spec.provider);
      spec.trace = traceOfNewJob(callerTrace(req.traceparent, ctx), deps.reconciler.trace.isRecording);
      if (spec.idempotencyKey.startsWith(SCHEDULE_KEY_PREFIX)) {
        // Else a job submitted ahead of a schedule's tick would take that tick's place.
        throw new InvalidInputError(`idempotencyKey: the prefix "${SCHEDULE_KEY_PREFIX}" is reserved for the jobs schedules submit`, "idempotencyKey");
      }
      const submitted = await submitJob(
        { store, log: deps.log, metrics: deps.metrics, nudge: () => deps.reconciler.nudge(), secretBox: deps.secretBox },
        {
          spec,
          nowMs: clock.nowMs(),
          // Idempotency keys are per API key (store/jobs.ts): a reused one finds this key's job only.
          submittedBy: caller.keyName,
        },
      );
      // Only a schedule's tick can be handled elsewhere first.
      if (!submitted) throw new Error("submit: no job stored");
      const { job: row, isNew } = submitted;
      return create(SubmitJobResponseSchema, { job: toJob(row, isNew ? [] : await store.workers.listOfJob(row.id), maySeeEnvValues(caller)) });
    },

    async rerunJob(req, ctx) {
      const caller = ctx.values.get(CALLER);
      const original = await readJob(req.id);
      requireJobRead(caller, owner(original));
      if (!isTerminal(original.state)) {
        throw new ConflictError(`job ${original.id} is ${original.state}; only a finished job can be rerun (wait for it to end, or cancel it first)`);
      }
      refuseLostSecrets(original);
      const spec = validateJobSpec(rerunSpec(original), {
        provider: deps.defaultProvider,
        timeoutSeconds: deps.defaultTimeoutSeconds,
        providers: [...deps.providers.keys()],
        isWebhookPrivateAllowed: deps.isWebhookPrivateAllowed,
      });
      requireProvider(caller, spec.provider);
      spec.trace = traceOfNewJob(callerTrace("", ctx), deps.reconciler.trace.isRecording);
      const row = await store.jobs.insert(newId(), spec, clock.nowMs(), caller.keyName, original.id);
      deps.metrics.jobsSubmitted.inc({ provider: row.provider });
      deps.log.info({ jobId: row.id, rerunOf: original.id, provider: row.provider, submittedBy: row.submitted_by }, "job submitted");
      deps.reconciler.nudge();
      store.hint("reconcile");
      return toJob(row, [], maySeeEnvValues(caller));
    },

    async getJob(req, ctx) {
      return loadJob(req.id, ctx.values.get(CALLER));
    },

    async listJobs(req, ctx) {
      const states = parseStateFilter(req.states);
      if (req.limit < 0 || req.limit > 500) throw new InvalidInputError("limit: between 1 and 500", "limit");
      const limit = req.limit || 50;
      const text = parseQuery(req.query);
      const filters = {
        states,
        provider: req.provider || undefined,
        labels: parseLabelSelector(req.labelSelector),
        before: req.pageToken ? decodePageToken(req.pageToken) : undefined,
      };
      let page: JobRow[];
      let next: { createdAt: number; id: string } | null = null;
      let search: { isPartial: boolean; examined: number } | undefined;
      if (text) {
        const found = await store.jobs.searchCommands({ ...filters, text, limit, examineLimit: SEARCH_EXAMINE_LIMIT });
        // Id matches come first, on the first page only (a range of the primary key, any age).
        const byId = filters.before ? [] : (await store.jobs.listByIdPrefix(text, limit)).filter((row) => isListed(row, filters));
        const ids = new Set(byId.map((row) => row.id));
        byId.sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
        page = [...byId, ...found.jobs.filter((row) => !ids.has(row.id))];
        next = found.next;
        search = { isPartial: found.isPartial, examined: found.examined };
      } else {
        const rows = await store.jobs.list({ ...filters, limit: limit + 1 });
        page = rows.slice(0, limit);
        const last = page.at(-1);
        if (rows.length > limit && last) next = { createdAt: last.created_at, id: last.id };
      }
      const workers = await store.workers.listOfJobs(page.map((row) => row.id));
      const isEnvShown = maySeeEnvValues(ctx.values.get(CALLER));
      const jobs = page.map((row) => toJob(row, workers.get(row.id) ?? [], isEnvShown));
      return create(ListJobsResponseSchema, {
        jobs,
        nextPageToken: next ? encodePageToken(next.createdAt, next.id) : "",
        partial: search?.isPartial ?? false,
        examined: search?.examined ?? 0,
      });
    },

    async cancelJob(req, ctx) {
      const caller = ctx.values.get(CALLER);
      const current = await readJob(req.id);
      requireJobCancel(caller, owner(current));
      if (current.state === "canceled") return loadJob(req.id, caller);
      if (isTerminal(current.state)) throw new ConflictError(`job ${req.id} already ${current.state}; nothing to cancel`);
      const canceled = await deps.reconciler.cancelJob(req.id, caller.keyName ? `canceled by user (API key "${caller.keyName}")` : "canceled by user");
      if (!canceled) return cancelRaceResult(req.id, caller);
      deps.logHub.notify(req.id);
      return loadJob(req.id, caller);
    },

    async *getLogs(req, ctx: HandlerContext) {
      if (!req.jobId) throw new InvalidInputError("jobId: required", "jobId");
      if (req.afterCursor < 0n) throw new InvalidInputError("afterCursor: a cursor from a LogEntry, or 0 for all", "afterCursor");
      const caller = ctx.values.get(CALLER);
      const found = await store.jobs.get(req.jobId);
      if (!found) throw new NotFoundError(`job ${req.jobId} not found`);
      requireJobRead(caller, owner(found));
      let position = positionOf(req.afterCursor);
      let keyCheckedAtMs = clock.nowMs();
      /** Reads and yields every page stored after `position`. */
      const drain = async function* () {
        for (;;) {
          const rows = await store.logs.read(req.jobId, position, LOG_PAGE);
          for (const row of rows) {
            position = { attempt: row.attempt, seq: Number(row.seq) };
            yield toLogEntry(row);
          }
          if (rows.length < LOG_PAGE) return;
        }
      };
      for (;;) {
        if (!req.follow) return yield* drain();
        // Finished when the job is final and no worker of it can still send output. Checked before
        // the read: once it holds, nothing more can be stored, so the read after it is the last.
        const job = await store.jobs.get(req.jobId);
        const workers = await store.workers.listOfJob(req.jobId);
        const isDone = job && isTerminal(job.state) && workers.every((w) => w.state === "destroying" || w.state === "destroyed");
        yield* drain();
        if (isDone) {
          // The job as it ended, so that the client need not read it again (`hodei run` returns on it).
          if (req.endWithJob) yield create(LogEntrySchema, { cursor: cursorOf(position), job: await jobSeenBy(caller, job, workers) });
          return;
        }
        if (ctx.signal.aborted) return;
        await deps.logHub.wait(req.jobId, FOLLOW_POLL_MS, ctx.signal);
        // A follower may outlive its key: it ends within a second of the key's revocation.
        if (clock.nowMs() - keyCheckedAtMs >= FOLLOW_KEY_CHECK_MS) {
          keyCheckedAtMs = clock.nowMs();
          await caller.assertActive();
        }
      }
    },

    async listWorkers(req) {
      const rows = await store.workers.list(req.all ? null : LIVE_WORKER_STATES, req.limit > 0 ? Math.min(req.limit, 1000) : 200);
      return create(ListWorkersResponseSchema, { workers: rows.map(toWorker) });
    },

    async listTokens(req) {
      const rows = await store.tokens.list(req.limit > 0 ? Math.min(req.limit, 1000) : 50);
      const now = clock.nowMs();
      return create(ListTokensResponseSchema, { tokens: rows.map((t) => toOtpToken(t, now)) });
    },

    async listProviders() {
      const live = await store.workers.countLiveByProvider();
      const providers = await Promise.all(
        [...deps.providers].map(async ([name, slot]) => {
          const health = await withDeadline(clock, `${name} health`, PROVIDER_QUERY_MS, (signal) => slot.provider.health(signal)).catch((err: Error) => ({
            healthy: false,
            detail: err.message,
          }));
          const orphans = health.healthy ? await countOrphans(slot) : { count: 0, error: "not counted: the provider is unhealthy" };
          return create(ProviderSchema, {
            name,
            isDefault: name === deps.defaultProvider,
            healthy: health.healthy,
            detail: health.detail,
            maxWorkers: slot.maxWorkers,
            activeWorkers: live.get(name) ?? 0,
            orphans: orphans.count,
            orphansError: orphans.error,
            workerServerUrl: slot.workerServerUrl,
            workerServerUrlWarning: deps.workerUrlWarning(name, slot.workerServerUrl),
          });
        }),
      );
      return create(ListProvidersResponseSchema, { providers });
    },
  };

  /**
   * Labelled resources of the provider with no live worker row: what the reaper will remove. A
   * list that fails is reported as an error, never as 0 orphans.
   */
  async function countOrphans(slot: ProviderSlot): Promise<{ count: number; error: string }> {
    let resources;
    try {
      resources = await withDeadline(clock, `${slot.provider.name} list`, PROVIDER_QUERY_MS, (signal) => slot.provider.list(signal));
    } catch (err) {
      return { count: 0, error: `not counted: listing its resources failed: ${toError(err).message}` };
    }
    const workers = await store.workers.getMany(resources.map((r) => r.workerId));
    return { count: resources.filter((resource) => isOrphan(resource, workers.get(resource.workerId))).length, error: "" };
  }

  async function cancelRaceResult(id: string, caller: Caller) {
    const job = await loadJob(id, caller);
    if (job.state === "canceled") return job;
    throw new ConflictError(`job ${id} already ${job.state}; nothing to cancel`);
  }
}

function owner(job: JobRow): { id: string; submittedBy: string | null } {
  return { id: job.id, submittedBy: job.submitted_by };
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

/**
 * LogEntry.cursor: attempt * 2^32 + seq, so cursors order entries as (attempt, seq) do. A seq is
 * below 2^31 (the worker service refuses more) and attempts are at most a few (a job allows 10),
 * so a cursor is exact in an int64 and in a JavaScript number alike.
 */
const CURSOR_SEQ_BITS = 32n;

function positionOf(cursor: bigint): { attempt: number; seq: number } {
  return { attempt: Number(cursor >> CURSOR_SEQ_BITS), seq: Number(cursor & ((1n << CURSOR_SEQ_BITS) - 1n)) };
}

function cursorOf(position: { attempt: number; seq: number }): bigint {
  return (BigInt(position.attempt) << CURSOR_SEQ_BITS) | BigInt(position.seq);
}

function toLogEntry(row: { attempt: number; seq: number; stream: string; data: Uint8Array; time_ms: number }): LogEntry {
  return create(LogEntrySchema, {
    attempt: row.attempt,
    seq: BigInt(row.seq),
    stream: row.stream,
    data: row.data,
    time: timestampFromMs(Number(row.time_ms)),
    cursor: cursorOf(row),
  });
}
