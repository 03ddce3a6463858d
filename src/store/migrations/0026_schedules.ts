/**
 * Schedules (core/schedule.ts): a job template submitted on a cron schedule, fired by the leader
 * (scheduler/schedules.ts). One row per schedule, named by the user (the primary key; compared
 * byte by byte on PostgreSQL, COLLATE "C", as on SQLite, so pages by name agree on both).
 *
 * spec: the validated job template as JSON (core/job-spec.ts JobSpec, without secrets, which a
 * schedule may not hold, and without an idempotency key, which each tick sets). next_run_at: the
 * first tick not yet handled (index schedules_due: what each pass reads). last_run_at and
 * last_job_id: the tick last fired and its job. Skipped ticks (missed, or the previous job still
 * running under concurrency forbid) are counted with the last reason. Times are epoch ms.
 *
 * jobs.schedule_name: the schedule that fired the job; null for a job submitted directly.
 */
import { type Kysely, sql } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const ms = kind === "postgres" ? "bigint" : "integer";
  await db.schema
    .createTable("schedules")
    .addColumn("name", kind === "postgres" ? sql`text collate "C"` : "text", (c) => c.primaryKey())
    .addColumn("cron", "text", (c) => c.notNull())
    .addColumn("timezone", "text", (c) => c.notNull())
    .addColumn("spec", "text", (c) => c.notNull())
    .addColumn("missed_policy", "text", (c) => c.notNull())
    .addColumn("concurrency", "text", (c) => c.notNull())
    .addColumn("paused", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_run_at", ms, (c) => c.notNull())
    .addColumn("last_run_at", ms)
    .addColumn("last_job_id", "text")
    .addColumn("fired_ticks", ms, (c) => c.notNull().defaultTo(0))
    .addColumn("skipped_ticks", ms, (c) => c.notNull().defaultTo(0))
    .addColumn("last_skip_reason", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("last_skipped_at", ms)
    .addColumn("created_at", ms, (c) => c.notNull())
    .addColumn("created_by", "text")
    .execute();
  await db.schema.createIndex("schedules_due").on("schedules").columns(["paused", "next_run_at", "name"]).execute();
  await db.schema.alterTable("jobs").addColumn("schedule_name", "text").execute();
}
