/**
 * Queries on the schedules table (migration 0026). A schedule moves forward only by guarded
 * statements on its next_run_at: the tick a replica fires or skips must still be the schedule's
 * next one, so a second leader (a frozen one that woke up) that computed the same tick loses the
 * race and writes nothing. Firing a tick is one transaction: the job (with the tick's idempotency
 * key, so a tick is never two jobs) and the schedule's advance, or neither.
 */
import { type Kysely, sql } from "kysely";
import type { JobSpec } from "../core/job-spec.js";
import type { DatabaseKind } from "./database.js";
import { insertJobRows } from "./jobs.js";
import type { Database, JobRow, ScheduleRow, SchedulesTable } from "./schema.js";

export type NewSchedule = Pick<SchedulesTable, "name" | "cron" | "timezone" | "spec" | "missed_policy" | "concurrency" | "paused" | "next_run_at" | "created_at" | "created_by">;

/** A tick handled: the schedule moves from expectedNextRunAt (guard) to nextRunAt. */
export interface ScheduleAdvance {
  name: string;
  expectedNextRunAt: number;
  nextRunAt: number;
  /** Ticks passed over without a job in this advance (missed, forbidden), with why; none when absent. */
  skipped?: { count: number; reason: string; atMs: number };
}

/** The job a fired tick submits. */
export interface ScheduledJob {
  id: string;
  spec: JobSpec;
  nowMs: number;
  submittedBy: string | null;
  tickMs: number;
}

/** Thrown inside the firing transaction to undo the job's insert when the guard lost. */
class LostRace extends Error {}

export class ScheduleQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
  ) {}

  /** Stores a new schedule; null when the name is taken. */
  async insert(row: NewSchedule): Promise<ScheduleRow | null> {
    const inserted = await this.db
      .insertInto("schedules")
      .values(row)
      .onConflict((oc) => oc.column("name").doNothing())
      .returningAll()
      .executeTakeFirst();
    return inserted ?? null;
  }

  async count(): Promise<number> {
    const row = await this.db.selectFrom("schedules").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async get(name: string): Promise<ScheduleRow | undefined> {
    return this.db.selectFrom("schedules").selectAll().where("name", "=", name).executeTakeFirst();
  }

  /** By name, after `afterName` (paging). */
  async list(afterName: string, limit: number): Promise<ScheduleRow[]> {
    return this.db.selectFrom("schedules").selectAll().where("name", ">", afterName).orderBy("name").limit(limit).execute();
  }

  /** Schedules not paused whose next tick is at or before nowMs, earliest first (index schedules_due). */
  async listDue(nowMs: number, limit: number): Promise<ScheduleRow[]> {
    return this.db
      .selectFrom("schedules")
      .selectAll()
      .where("paused", "=", 0)
      .where("next_run_at", "<=", nowMs)
      .orderBy("next_run_at")
      .orderBy("name")
      .limit(limit)
      .execute();
  }

  /** The earliest next tick of any schedule not paused; null when there is none. */
  async nextDueAt(): Promise<number | null> {
    const row = await this.db.selectFrom("schedules").select("next_run_at").where("paused", "=", 0).orderBy("next_run_at").limit(1).executeTakeFirst();
    return row ? Number(row.next_run_at) : null;
  }

  /** Pauses a running schedule; null when there is none by that name that runs. */
  async pause(name: string): Promise<ScheduleRow | null> {
    const row = await this.db.updateTable("schedules").set({ paused: 1 }).where("name", "=", name).where("paused", "=", 0).returningAll().executeTakeFirst();
    return row ?? null;
  }

  /** Resumes a paused schedule from nextRunAt (no catch-up of the ticks it was paused for); null when none is paused by that name. */
  async resume(name: string, nextRunAt: number): Promise<ScheduleRow | null> {
    const row = await this.db
      .updateTable("schedules")
      .set({ paused: 0, next_run_at: nextRunAt })
      .where("name", "=", name)
      .where("paused", "=", 1)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** Removes a schedule (the jobs it fired stay); the removed row, or null when there was none. */
  async delete(name: string): Promise<ScheduleRow | null> {
    const row = await this.db.deleteFrom("schedules").where("name", "=", name).returningAll().executeTakeFirst();
    return row ?? null;
  }

  /**
   * Fires one tick: inserts its job (or finds the job its idempotency key already made) and moves
   * the schedule on, in one transaction. Null, with nothing written, when the schedule is no
   * longer at expectedNextRunAt (another replica handled it), was paused or was removed.
   */
  async fire(advance: ScheduleAdvance, job: ScheduledJob): Promise<JobRow | null> {
    try {
      return await this.db.transaction().execute(async (tx) => {
        const row = await insertJobRows(tx, this.kind, job.id, job.spec, job.nowMs, job.submittedBy, null, advance.name);
        const moved = await this.advanceIn(tx, advance, {
          last_run_at: job.tickMs,
          last_job_id: row.id,
          fired_ticks: sql<number>`fired_ticks + 1`,
        });
        if (!moved) throw new LostRace();
        return row;
      });
    } catch (err) {
      if (err instanceof LostRace) return null;
      throw err;
    }
  }

  /** Moves the schedule on without a job (ticks skipped); false when the guard lost. */
  async skip(advance: ScheduleAdvance): Promise<boolean> {
    return this.advanceIn(this.db, advance, {});
  }

  private async advanceIn(db: Kysely<Database>, advance: ScheduleAdvance, set: Record<string, unknown>): Promise<boolean> {
    const skipped = advance.skipped;
    const result = await db
      .updateTable("schedules")
      .set({
        ...set,
        next_run_at: advance.nextRunAt,
        ...(skipped && {
          skipped_ticks: sql<number>`skipped_ticks + ${skipped.count}`,
          last_skip_reason: skipped.reason,
          last_skipped_at: skipped.atMs,
        }),
      })
      .where("name", "=", advance.name)
      .where("next_run_at", "=", advance.expectedNextRunAt)
      .where("paused", "=", 0)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}
