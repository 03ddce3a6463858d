/**
 * The `schedules` step (leader only): fires the due ticks of every schedule (core/schedule.ts),
 * each through the one submit path (submit.ts), in the same transaction as the schedule's advance.
 *
 * Invariants:
 * - a tick is at most one job: its idempotency key names it (schedule:<name>:<tick>), and the
 *   advance is guarded by the schedule's next_run_at, so a second leader (one that froze between
 *   its lease check and its statements), a restart between two statements or a repeated pass
 *   writes the same job or nothing;
 * - a tick is handled once: fired, or skipped with the reason recorded (missed, concurrency forbid,
 *   the creating key revoked or lacking a scope, a template no longer valid); the schedule always
 *   moves on, so one bad schedule never blocks a pass nor repeats an error every pass;
 * - after an outage, at most one job per schedule for all its missed ticks (run-once), or none (skip).
 */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { AlreadyExistsError, InvalidInputError, toError } from "../core/errors.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import { traceOfNewJob } from "../core/trace-context.js";
import { isTerminal } from "../core/job-state.js";
import { cronOf, DEFAULT_SCHEDULE_GRACE_MS, type MissedPolicy, planTicks, tickKey, tickLabels } from "../core/schedule.js";
import { grants, providerScope } from "../core/scopes.js";
import type { Metrics } from "../metrics.js";
import { scopesOf } from "../store/keys.js";
import type { ScheduleRow } from "../store/schema.js";
import type { ScheduleAdvance, Store } from "../store/store.js";
import { submitJob } from "./submit.js";

/** Due schedules read per pass; a full batch asks for another pass at once. */
const BATCH = 100;
/** Missed ticks are counted (skipped_ticks) up to this many per outage: counting costs a cron step each. */
const MAX_COUNTED_MISSED = 1000;

export interface ScheduleStepContext {
  store: Store;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Enabled providers (a template's provider must still be one). */
  providers: Map<string, unknown>;
  nudge(): void;
  /** Whether a job's trace is recorded (job-trace.ts): a tick's job gets a trace of its own then. */
  trace?: { readonly isRecording: boolean };
  /** Webhook settings: a template's private notify URL stays valid where the server allows them. */
  webhooks?: { isPrivateAllowed: boolean };
  /** A tick seen later than this after its time was missed, ms. Default 30 s. */
  scheduleGraceMs?: number;
}

/** Fires what is due at the clock's now; returns the earliest next tick of any running schedule (null: none). */
export async function fireDueSchedules(ctx: ScheduleStepContext): Promise<number | null> {
  const nowMs = ctx.clock.nowMs();
  const due = await ctx.store.schedules.listDue(nowMs, BATCH);
  for (const row of due) {
    try {
      await fireSchedule(ctx, row, nowMs);
    } catch (err) {
      // The schedule stays where it was: the next pass tries its tick again (the same job, by its key).
      ctx.log.error({ err: toError(err), schedule: row.name }, "could not fire a schedule's tick; the next pass retries it");
    }
  }
  if (due.length === BATCH) ctx.nudge();
  return ctx.store.schedules.nextDueAt();
}

async function fireSchedule(ctx: ScheduleStepContext, row: ScheduleRow, nowMs: number): Promise<void> {
  const graceMs = ctx.scheduleGraceMs ?? DEFAULT_SCHEDULE_GRACE_MS;
  const cron = cronOf(row.cron, row.timezone);
  const plan = planTicks(cron, row.next_run_at, nowMs, graceMs, row.missed_policy as MissedPolicy);
  if (plan.nextRunAtMs === null) {
    // Validation refuses an expression that never matches; one that stops matching is paused, not retried each pass.
    await ctx.store.schedules.pause(row.name);
    ctx.log.warn({ schedule: row.name, cron: row.cron }, "schedule has no tick left; paused");
    return;
  }
  let expected = row.next_run_at;
  let skipped: ScheduleAdvance["skipped"];
  if (plan.skippedMissedMs !== null) {
    const count = countTicks(cron, row.next_run_at, plan.skippedMissedMs);
    skipped = {
      count,
      atMs: nowMs,
      reason: `missed: ${count >= MAX_COUNTED_MISSED ? `${MAX_COUNTED_MISSED} or more ticks` : `${count} tick(s)`} up to ${iso(plan.skippedMissedMs)} came more than ${graceMs / 1000} s before the control plane could fire them (missed policy ${row.missed_policy})`,
    };
    ctx.log.warn({ schedule: row.name, count, latestMissed: iso(plan.skippedMissedMs) }, "schedule ticks missed");
  }
  if (plan.fire.length === 0) {
    const isMoved = await ctx.store.schedules.skip({ name: row.name, expectedNextRunAt: expected, nextRunAt: plan.nextRunAtMs, skipped });
    if (isMoved && skipped) countSkipped(ctx, "missed", skipped.count);
    return;
  }
  const refusal = await refusalOfCreator(ctx.store, row);
  let lastJobId = row.last_job_id;
  for (const [i, tickMs] of plan.fire.entries()) {
    const nextRunAt = i + 1 < plan.fire.length ? plan.fire[i + 1] : plan.nextRunAtMs;
    const advance: ScheduleAdvance = { name: row.name, expectedNextRunAt: expected, nextRunAt, skipped };
    /** Missed ticks this advance records, counted once it is written. */
    const missed = skipped?.count ?? 0;
    skipped = undefined;
    const forbid = row.concurrency === "forbid" && refusal === null ? await stillRunning(ctx.store, lastJobId) : null;
    const template = refusal ?? forbid ?? specOfTick(ctx, row, tickMs, nowMs);
    if (typeof template === "string") {
      const reason = `tick ${iso(tickMs)} fired no job: ${template}`;
      const isMoved = await ctx.store.schedules.skip({ ...advance, skipped: { count: (advance.skipped?.count ?? 0) + 1, reason, atMs: nowMs } });
      if (!isMoved) return;
      countSkipped(ctx, "missed", missed);
      countSkipped(ctx, refusal !== null ? "creator_key" : forbid !== null ? "concurrency_forbid" : "invalid_template", 1);
      ctx.log.info({ schedule: row.name, tick: iso(tickMs), reason: template }, "schedule tick skipped");
      expected = nextRunAt;
      continue;
    }
    const spec = template;
    let submitted;
    try {
      submitted = await submitJob(ctx, { spec, nowMs, submittedBy: row.created_by, schedule: { ...advance, tickMs } });
    } catch (err) {
      // The tick's key names a job with another spec (a schedule removed and made again): the schedule moved on with it.
      if (!(err instanceof AlreadyExistsError)) throw err;
      ctx.log.warn({ schedule: row.name, tick: iso(tickMs), err: err.message }, "schedule tick's job already exists with another spec");
      // The schedule's advance was written with the job's insert: its missed ticks are recorded too.
      countSkipped(ctx, "missed", missed);
      countSkipped(ctx, "job_exists", 1);
      expected = nextRunAt;
      continue;
    }
    // Handled by another replica first (a change of leader): it goes on from there.
    if (!submitted) return;
    countSkipped(ctx, "missed", missed);
    ctx.metrics.scheduleTicks.inc({ result: "fired", reason: "" });
    lastJobId = submitted.job.id;
    expected = nextRunAt;
  }
}

/** The job of one tick: the template, with the tick's idempotency key and labels; or why not. */
function specOfTick(ctx: ScheduleStepContext, row: ScheduleRow, tickMs: number, nowMs: number): JobSpec | string {
  const template = JSON.parse(row.spec) as JobSpec;
  try {
    const spec = validateJobSpec(
      { ...template, idempotencyKey: tickKey(row.name, tickMs), labels: { ...template.labels, ...tickLabels(row.name, tickMs) } },
      {
        provider: template.provider,
        timeoutSeconds: template.timeoutSeconds,
        providers: [...ctx.providers.keys()],
        nowMs,
        isWebhookPrivateAllowed: ctx.webhooks?.isPrivateAllowed ?? false,
      },
    );
    spec.trace = traceOfNewJob(null, ctx.trace?.isRecording ?? false);
    return spec;
  } catch (err) {
    if (err instanceof InvalidInputError) return `the template is no longer valid (${err.message})`;
    throw err;
  }
}

/**
 * Ticks are submitted as the API key that created the schedule: one revoked since, or without the
 * scopes (a key's scopes never change, but a key row from a newer release may name unknown ones),
 * fires nothing. Null: it may.
 */
async function refusalOfCreator(store: Store, row: ScheduleRow): Promise<string | null> {
  if (row.created_by === null) return null;
  const key = await store.keys.get(row.created_by);
  if (!key || key.revoked_at !== null) return `the API key "${row.created_by}" that created the schedule was revoked; create the schedule again with a working key`;
  const scopes = scopesOf(key);
  const provider = (JSON.parse(row.spec) as JobSpec).provider;
  for (const needed of ["submit", providerScope(provider)] as const) {
    if (!grants(scopes, needed)) return `the API key "${row.created_by}" that created the schedule lacks the scope "${needed}"`;
  }
  return null;
}

/** Under concurrency forbid: why the tick may not fire (the previous job has not ended), or null. */
async function stillRunning(store: Store, lastJobId: string | null): Promise<string | null> {
  if (lastJobId === null) return null;
  const job = await store.jobs.get(lastJobId);
  // A job removed by retention had ended.
  if (!job || isTerminal(job.state)) return null;
  return `the previous job ${job.id} is still ${job.state} (concurrency forbid)`;
}

/** Skipped ticks for /metrics (hodei_schedule_ticks_total), by why: a bounded set of reasons. */
function countSkipped(ctx: ScheduleStepContext, reason: "missed" | "concurrency_forbid" | "creator_key" | "invalid_template" | "job_exists", count: number): void {
  if (count > 0) ctx.metrics.scheduleTicks.inc({ result: "skipped", reason }, count);
}

/** Ticks from fromMs to toMs inclusive, counted up to MAX_COUNTED_MISSED. */
function countTicks(cron: ReturnType<typeof cronOf>, fromMs: number, toMs: number): number {
  let count = 0;
  for (let tick: number | null = fromMs; tick !== null && tick <= toMs && count < MAX_COUNTED_MISSED; tick = cron.nextRun(new Date(tick))?.getTime() ?? null) count++;
  return count;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
