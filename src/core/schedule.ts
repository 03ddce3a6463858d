/**
 * Schedules: a job template submitted on a cron schedule. Pure rules, no I/O: what a schedule may
 * be (validateSchedule, each error naming its field) and which ticks a pass fires (planTicks).
 *
 * A **tick** is one time the cron expression matches, in the schedule's timezone, as an instant
 * (epoch ms, whole seconds). Each tick fires at most one job, whose idempotency key names it
 * (tickKey), so a tick fired twice (two leaders, a restart between the insert and the advance)
 * is the same job.
 *
 * On time or missed: a tick is on time while the control plane sees it at most `graceMs` after its
 * time (a slow pass, a change of leader, a short restart): every on-time tick fires, oldest first.
 * A tick seen later than that was missed (the control plane was down or the schedule could not
 * fire): `skip` fires nothing for it; `run-once` fires one job for the latest missed tick, and
 * only when no on-time tick fires in the same pass, so a long outage costs at most one job.
 *
 * DST (croner's rules): a fixed-time expression ("30 2 * * *") whose time falls in a gap runs at
 * the first valid time after it, and once when the time occurs twice; an interval expression
 * ("* /30 * * * *") skips times that do not exist and runs at both occurrences of a repeated time.
 */
import { Cron } from "croner";
import { InvalidInputError } from "./errors.js";

export const MISSED_POLICIES = ["skip", "run-once"] as const;
export type MissedPolicy = (typeof MISSED_POLICIES)[number];
export const CONCURRENCY_POLICIES = ["allow", "forbid"] as const;
export type ConcurrencyPolicy = (typeof CONCURRENCY_POLICIES)[number];

export const SCHEDULE_LIMITS = {
  nameChars: 63,
  cronChars: 200,
  timezoneChars: 64,
  /** Schedules per installation: each costs a little of every leader pass. */
  schedules: 10_000,
} as const;

/** The label every job a schedule fires carries (value: the schedule's name), for ListJobs by label. */
export const SCHEDULE_LABEL = "hodei.io/schedule";
/** The label that says which tick fired a job (value: the tick, ISO 8601 in UTC). */
export const TICK_LABEL = "hodei.io/schedule-tick";

/** The labels a schedule adds to the job of one tick. */
export function tickLabels(name: string, tickMs: number): Record<string, string> {
  return { [SCHEDULE_LABEL]: name, [TICK_LABEL]: new Date(tickMs).toISOString() };
}

/** A tick seen at most this late is fired (on time); later it was missed. ms. */
export const DEFAULT_SCHEDULE_GRACE_MS = 30_000;
/** On-time ticks one schedule fires per pass at most; the next pass (run at once) fires the rest. */
export const MAX_TICKS_PER_PASS = 10;

const NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export interface ScheduleSettings {
  name: string;
  cron: string;
  /** IANA name; "" is UTC. */
  timezone: string;
  missed: MissedPolicy;
  concurrency: ConcurrencyPolicy;
}

function fail(field: string, message: string): never {
  throw new InvalidInputError(`${field}: ${message}`, field);
}

/** Validates and normalises a schedule's settings (defaults: UTC, skip, allow). */
export function validateSchedule(input: { name: string; cron: string; timezone?: string; missed?: string; concurrency?: string }): ScheduleSettings {
  const name = input.name;
  if (name === "") fail("name", "required: lowercase letters, digits and -, e.g. nightly-backup");
  if (name.length > SCHEDULE_LIMITS.nameChars) fail("name", `at most ${SCHEDULE_LIMITS.nameChars} characters (got ${name.length})`);
  if (!NAME.test(name)) fail("name", `"${name}" is not a schedule name: lowercase letters, digits and -, starting and ending with a letter or digit`);
  const timezone = (input.timezone ?? "").trim();
  if (timezone.length > SCHEDULE_LIMITS.timezoneChars) fail("timezone", `at most ${SCHEDULE_LIMITS.timezoneChars} characters`);
  if (timezone !== "" && !isTimezone(timezone)) fail("timezone", `"${timezone}" is not an IANA time zone name, e.g. Europe/Madrid, America/New_York or UTC`);
  const cron = input.cron.trim().replace(/\s+/g, " ");
  if (cron === "") fail("cron", 'required: 5 fields (minute hour day month weekday, e.g. "*/5 * * * *") or 6 with seconds first');
  if (cron.length > SCHEDULE_LIMITS.cronChars) fail("cron", `at most ${SCHEDULE_LIMITS.cronChars} characters`);
  let parsed: Cron;
  try {
    parsed = cronOf(cron, timezone);
  } catch (err) {
    fail("cron", `"${cron}" is not a cron expression: ${(err as Error).message.replace(/^CronPattern: /, "")}`);
  }
  if (parsed.nextRun(new Date()) === null) fail("cron", `"${cron}" never matches a time`);
  const missed = input.missed || "skip";
  if (!(MISSED_POLICIES as readonly string[]).includes(missed)) fail("missed", `"${missed}": use skip or run-once`);
  const concurrency = input.concurrency || "allow";
  if (!(CONCURRENCY_POLICIES as readonly string[]).includes(concurrency)) fail("concurrency", `"${concurrency}": use allow or forbid`);
  return { name, cron, timezone, missed: missed as MissedPolicy, concurrency: concurrency as ConcurrencyPolicy };
}

function isTimezone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** The parsed expression: 5 fields, or 6 with seconds first; never a timer (no function is given). */
export function cronOf(cron: string, timezone: string): Cron {
  return new Cron(cron, { timezone: timezone || "UTC", mode: "5-or-6-parts" });
}

/** The first tick strictly after `afterMs`; null when there is none. */
export function nextTickAfter(cron: Cron, afterMs: number): number | null {
  return cron.nextRun(new Date(afterMs))?.getTime() ?? null;
}

/** Idempotency keys with this prefix are the schedules' own: SubmitJob refuses them. */
export const SCHEDULE_KEY_PREFIX = "schedule:";

/** The idempotency key of the job a tick fires: the same tick is always the same job. */
export function tickKey(name: string, tickMs: number): string {
  return `${SCHEDULE_KEY_PREFIX}${name}:${new Date(tickMs).toISOString()}`;
}

export interface TickPlan {
  /** Ticks to fire now, oldest first, one job each. */
  fire: number[];
  /** The latest tick that was missed and is not fired (skip), or null. */
  skippedMissedMs: number | null;
  /** Where the schedule goes next: the first tick not yet handled; null when no tick remains. */
  nextRunAtMs: number | null;
}

/**
 * Which of a schedule's ticks a pass at nowMs fires. nextRunAtMs: the first tick not yet handled
 * (due when <= nowMs). Cost: a few cron steps plus at most MAX_TICKS_PER_PASS, whatever the outage.
 */
export function planTicks(cron: Cron, nextRunAtMs: number, nowMs: number, graceMs: number, missed: MissedPolicy): TickPlan {
  if (nextRunAtMs > nowMs) return { fire: [], skippedMissedMs: null, nextRunAtMs };
  const onTimeFromMs = nowMs - graceMs;
  const hasMissed = nextRunAtMs < onTimeFromMs;
  const fire: number[] = [];
  let tick: number | null = hasMissed ? nextTickAfter(cron, onTimeFromMs - 1) : nextRunAtMs;
  while (tick !== null && tick <= nowMs && fire.length < MAX_TICKS_PER_PASS) {
    fire.push(tick);
    tick = nextTickAfter(cron, tick);
  }
  // Ticks left over (the cap) are due and on time: the next pass continues from the first of them.
  const nextAfter = tick !== null && tick <= nowMs ? tick : nextTickAfter(cron, nowMs);
  if (!hasMissed) return { fire, skippedMissedMs: null, nextRunAtMs: nextAfter };
  const latestMissed = cron.previousRuns(1, new Date(onTimeFromMs))[0]?.getTime() ?? nextRunAtMs;
  if (fire.length === 0 && missed === "run-once") return { fire: [latestMissed], skippedMissedMs: null, nextRunAtMs: nextAfter };
  return { fire, skippedMissedMs: latestMissed, nextRunAtMs: nextAfter };
}
