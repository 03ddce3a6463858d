/**
 * The schedules API (hodei.v1.ScheduleService): create, get, list, pause, resume, delete. The
 * leader fires the ticks (scheduler/schedules.ts); this only stores and changes schedules.
 *
 * A template is validated as SubmitJob validates a job (errors name the field, prefixed
 * "template."), with the schedule's label added, and stored as the validated spec. A template may
 * not hold secrets: a schedule keeps its template for as long as it exists, while a job's secrets
 * are deleted when it ends; storing them for a schedule would keep them at rest indefinitely.
 * Who may do what follows access.ts: creating needs submit (and provider:P); pausing, resuming and
 * deleting one's own schedule needs submit, anyone's admin.
 */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError } from "../core/errors.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { cronOf, nextTickAfter, SCHEDULE_LIMITS, tickLabels, validateSchedule } from "../core/schedule.js";
import type { Toleration as CoreToleration } from "../core/placement.js";
import { ListSchedulesResponseSchema, type Schedule, ScheduleSchema, type ScheduleService, SubmitJobRequestSchema } from "../gen/hodei/v1/api_pb.js";
import type { ScheduleRow } from "../store/schema.js";
import { CALLER, type Caller, maySeeEnvValues, requireProvider, requireScheduleChange, requireScheduleRead } from "./access.js";
import { specInputOf, tolerationToApi } from "./api-mapping.js";
import type { JobServiceDeps } from "./job-service.js";

const DEFAULT_PAGE = 100;
const MAX_PAGE = 500;

export function createScheduleService(deps: JobServiceDeps): ServiceImpl<typeof ScheduleService> {
  const { store, clock } = deps;

  async function read(name: string): Promise<ScheduleRow> {
    if (!name) throw new InvalidInputError("name: required", "name");
    const row = await store.schedules.get(name);
    if (!row) throw new NotFoundError(`schedule ${name} not found`);
    return row;
  }

  /** The change was made, or the schedule was already so (unchanged): its row now. */
  async function changed(name: string, caller: Caller, change: () => Promise<ScheduleRow | null>): Promise<Schedule> {
    requireScheduleChange(caller, await read(name));
    const row = (await change()) ?? (await read(name));
    // The leader arms its wake-up for the schedule's next tick (another replica's at its next full pass).
    deps.reconciler.schedulesChanged();
    return toSchedule(row, maySeeEnvValues(caller));
  }

  return {
    async createSchedule(req, ctx) {
      const caller = ctx.values.get(CALLER);
      const settings = validateSchedule(req);
      const spec = validateTemplate(req.template ? specInputOf(req.template) : undefined, settings.name, deps, clock.nowMs());
      requireProvider(caller, spec.provider);
      if ((await store.schedules.count()) >= SCHEDULE_LIMITS.schedules) {
        throw new ConflictError(`at most ${SCHEDULE_LIMITS.schedules} schedules; delete some first (hodei schedule rm NAME)`);
      }
      const nowMs = clock.nowMs();
      const nextRunAt = nextTickAfter(cronOf(settings.cron, settings.timezone), nowMs);
      if (nextRunAt === null) throw new InvalidInputError(`cron: "${settings.cron}" never matches a time`, "cron");
      const row = await store.schedules.insert({
        name: settings.name,
        cron: settings.cron,
        timezone: settings.timezone,
        spec: JSON.stringify(spec),
        missed_policy: settings.missed,
        concurrency: settings.concurrency,
        paused: req.paused ? 1 : 0,
        next_run_at: nextRunAt,
        created_at: nowMs,
        created_by: caller.keyName,
      });
      if (!row) throw new AlreadyExistsError(`name: a schedule named ${settings.name} already exists (hodei schedule get ${settings.name}); choose another name or remove it first`);
      deps.log.info({ schedule: row.name, cron: row.cron, timezone: row.timezone, createdBy: row.created_by }, "schedule created");
      deps.reconciler.schedulesChanged();
      return toSchedule(row, maySeeEnvValues(caller));
    },

    async getSchedule(req, ctx) {
      const caller = ctx.values.get(CALLER);
      const row = await read(req.name);
      requireScheduleRead(caller, row);
      return toSchedule(row, maySeeEnvValues(caller));
    },

    async listSchedules(req, ctx) {
      if (req.limit < 0 || req.limit > MAX_PAGE) throw new InvalidInputError(`limit: between 1 and ${MAX_PAGE}`, "limit");
      const limit = req.limit || DEFAULT_PAGE;
      const after = req.pageToken ? decodePageToken(req.pageToken) : "";
      const rows = await store.schedules.list(after, limit + 1);
      const page = rows.slice(0, limit);
      const isEnvShown = maySeeEnvValues(ctx.values.get(CALLER));
      return create(ListSchedulesResponseSchema, {
        schedules: page.map((row) => toSchedule(row, isEnvShown)),
        nextPageToken: rows.length > limit ? Buffer.from(page[page.length - 1].name).toString("base64url") : "",
      });
    },

    async pauseSchedule(req, ctx) {
      return changed(req.name, ctx.values.get(CALLER), () => store.schedules.pause(req.name));
    },

    async resumeSchedule(req, ctx) {
      return changed(req.name, ctx.values.get(CALLER), async () => {
        const row = await read(req.name);
        const next = nextTickAfter(cronOf(row.cron, row.timezone), clock.nowMs());
        return next === null ? null : store.schedules.resume(req.name, next);
      });
    },

    async deleteSchedule(req, ctx) {
      const caller = ctx.values.get(CALLER);
      requireScheduleChange(caller, await read(req.name));
      const row = await store.schedules.delete(req.name);
      if (!row) throw new NotFoundError(`schedule ${req.name} not found`);
      deps.log.info({ schedule: row.name }, "schedule deleted");
      return toSchedule(row, maySeeEnvValues(caller));
    },
  };
}

/**
 * The template as a job spec, every error naming its field under "template."; what a schedule may
 * not hold refused. Validated with the labels each tick adds, so a template the ticks would make
 * invalid (too many labels) is refused now; stored without them.
 */
function validateTemplate(input: Partial<JobSpec> | undefined, name: string, deps: JobServiceDeps, nowMs: number): JobSpec {
  if (!input) throw new InvalidInputError("template: required: the job each tick submits (command or script, provider, ...)", "template");
  const refuse = (field: string, why: string): never => {
    throw new InvalidInputError(`template.${field}: ${why}`, `template.${field}`);
  };
  if (Object.keys(input.secrets ?? {}).length > 0) {
    refuse("secrets", "a schedule cannot hold secrets: it keeps its template for as long as it exists, and secrets are kept only while their job may run; give the job what it needs another way (e.g. a file or a credential store its command reads)");
  }
  if (input.idempotencyKey) refuse("idempotencyKey", "each tick sets its own (schedule:<name>:<tick>); leave it empty");
  if (input.runAtMs || input.delaySeconds) refuse(input.runAtMs ? "runAt" : "delaySeconds", "a tick's job is due at its tick; leave it empty");
  const added = tickLabels(name, nowMs);
  for (const label of Object.keys(added)) if (Object.hasOwn(input.labels ?? {}, label)) refuse("labels", `${label} is set by the schedule`);
  let spec: JobSpec;
  try {
    spec = validateJobSpec(
      { ...input, labels: { ...input.labels, ...added } },
      {
        provider: deps.defaultProvider,
        timeoutSeconds: deps.defaultTimeoutSeconds,
        providers: [...deps.providers.keys()],
        queueTimeoutSeconds: deps.defaultQueueTimeoutSeconds,
        nowMs,
        isWebhookPrivateAllowed: deps.isWebhookPrivateAllowed,
      },
    );
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`template.${err.message}`, `template.${err.field ?? ""}`);
    throw err;
  }
  const labels = { ...spec.labels };
  for (const label of Object.keys(added)) delete labels[label];
  return { ...spec, labels };
}

function decodePageToken(token: string): string {
  const name = Buffer.from(token, "base64url").toString();
  if (token.length > 200 || !/^[a-z0-9-]+$/.test(name)) throw new InvalidInputError("pageToken: not a token returned by ListSchedules", "pageToken");
  return name;
}

function ts(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : timestampFromMs(Number(ms));
}

/** A stored schedule as the API's message; template env values only for a caller who may see them. */
export function toSchedule(row: ScheduleRow, isEnvShown: boolean): Schedule {
  const spec = JSON.parse(row.spec) as JobSpec;
  return create(ScheduleSchema, {
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    missed: row.missed_policy,
    concurrency: row.concurrency,
    paused: row.paused === 1,
    nextRunAt: ts(row.next_run_at),
    lastRunAt: ts(row.last_run_at),
    lastJobId: row.last_job_id ?? "",
    createdAt: ts(row.created_at),
    createdBy: row.created_by ?? "",
    firedTicks: BigInt(row.fired_ticks),
    skippedTicks: BigInt(row.skipped_ticks),
    lastSkipReason: row.last_skip_reason,
    lastSkippedAt: ts(row.last_skipped_at),
    envRedacted: !isEnvShown,
    template: create(SubmitJobRequestSchema, {
      command: spec.command,
      script: spec.script,
      provider: spec.provider,
      env: isEnvShown ? spec.env : Object.fromEntries(Object.keys(spec.env).map((k) => [k, ""])),
      timeoutSeconds: spec.timeoutSeconds,
      labels: spec.labels,
      maxAttempts: spec.maxAttempts,
      image: spec.image,
      resources: { cpuMillis: spec.cpuMillis, memoryMb: spec.memoryMb },
      retryOnExitCodes: spec.retryOnExitCodes,
      priority: spec.priority,
      queueTimeoutSeconds: spec.queueTimeoutSeconds,
      pullPolicy: spec.pullPolicy,
      nodeSelector: spec.nodeSelector,
      tolerations: (spec.tolerations as CoreToleration[]).map(tolerationToApi),
    }),
  });
}
