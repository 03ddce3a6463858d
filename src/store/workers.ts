/**
 * Queries on the workers table. A worker runs one attempt of one job; its state changes are
 * guarded by the worker state machine (`where state in workerStatesLeadingTo(to)`).
 */
import type { Kysely } from "kysely";
import { LIVE_WORKER_STATES, workerStatesLeadingTo, type WorkerState } from "../core/worker-state.js";
import { firstRow } from "./compiled.js";
import type { Database, WorkerRow, WorkersTable } from "./schema.js";

export type WorkerPatch = Partial<
  Pick<WorkersTable, "failure_reason" | "finished_at" | "stop_deadline_ms" | "last_error" | "destroyed_at" | "started_at" | "exit_code">
>;

export class WorkerQueries {
  constructor(private readonly db: Kysely<Database>) {}

  async get(id: string): Promise<WorkerRow | undefined> {
    return firstRow(this.db, "workers.get", [id], (p) => this.db.selectFrom("workers").selectAll().where("id", "=", p(0)));
  }

  /** Workers by id, in one query (the reaper and the orphan count look up every labelled resource). */
  async getMany(ids: string[]): Promise<Map<string, WorkerRow>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom("workers").selectAll().where("id", "in", [...new Set(ids)]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }

  async getBySession(sessionHash: string): Promise<WorkerRow | undefined> {
    return this.db.selectFrom("workers").selectAll().where("session_hash", "=", sessionHash).executeTakeFirst();
  }

  /** The worker a provider knows by resourceId, while it still works on its attempt. */
  async findActiveByResource(provider: string, resourceId: string): Promise<WorkerRow | undefined> {
    return this.db
      .selectFrom("workers")
      .selectAll()
      .where("provider", "=", provider)
      .where("provider_resource_id", "=", resourceId)
      .where("state", "in", ["waiting", "registered", "running"])
      .executeTakeFirst();
  }

  async listOfJob(jobId: string): Promise<WorkerRow[]> {
    return this.db.selectFrom("workers").selectAll().where("job_id", "=", jobId).orderBy("attempt").execute();
  }

  /** The workers of each job, by attempt, in one query (a page of ListJobs). Jobs with none are absent. */
  async listOfJobs(jobIds: string[]): Promise<Map<string, WorkerRow[]>> {
    const byJob = new Map<string, WorkerRow[]>();
    if (jobIds.length === 0) return byJob;
    const rows = await this.db
      .selectFrom("workers")
      .selectAll()
      .where("job_id", "in", [...new Set(jobIds)])
      .orderBy("job_id")
      .orderBy("attempt")
      .execute();
    for (const row of rows) {
      const list = byJob.get(row.job_id);
      if (list) list.push(row);
      else byJob.set(row.job_id, [row]);
    }
    return byJob;
  }

  async list(states: readonly WorkerState[] | null, limit: number): Promise<WorkerRow[]> {
    let q = this.db.selectFrom("workers").selectAll();
    if (states) q = q.where("state", "in", states);
    return q.orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
  }

  async countLiveByProvider(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom("workers")
      .select(["provider", (eb) => eb.fn.countAll<number>().as("n")])
      .where("state", "in", LIVE_WORKER_STATES)
      .groupBy("provider")
      .execute();
    return new Map(rows.map((r) => [r.provider, Number(r.n)]));
  }

  /**
   * Workers not yet destroyed, counted by provider and state (the hodei_workers gauge): one range of
   * the workers_state index per live state, never the destroyed history.
   */
  async countLiveByProviderAndState(): Promise<{ provider: string; state: WorkerState; count: number }[]> {
    const rows = await this.db
      .selectFrom("workers")
      .select(["provider", "state", (eb) => eb.fn.countAll<number>().as("n")])
      .where("state", "in", LIVE_WORKER_STATES)
      .groupBy(["provider", "state"])
      .execute();
    return rows.map((r) => ({ provider: r.provider, state: r.state, count: Number(r.n) }));
  }

  async recordHeartbeat(workerId: string, nowMs: number): Promise<void> {
    await this.db.updateTable("workers").set({ last_heartbeat_ms: nowMs }).where("id", "=", workerId).execute();
  }

  /** Moves a worker to `to` if legal from its current state. */
  async transition(workerId: string, to: WorkerState, patch: WorkerPatch = {}): Promise<WorkerRow | null> {
    // Compiled once per target state and set of patched columns (store/compiled.ts).
    // A column set to undefined is left out, as Kysely's set() leaves it out.
    const columns = (Object.keys(patch) as (keyof WorkerPatch)[]).filter((c) => patch[c] !== undefined);
    const row = await firstRow(this.db, `workers.transition:${to}:${columns.join(",")}`, [workerId, ...columns.map((c) => patch[c])], (p) =>
      this.db
        .updateTable("workers")
        .set({ ...Object.fromEntries(columns.map((c, i) => [c, p(i + 1)])), state: to })
        .where("id", "=", p(0))
        .where("state", "in", workerStatesLeadingTo(to))
        .returningAll(),
    );
    return row ?? null;
  }

  async setFields(workerId: string, patch: WorkerPatch): Promise<void> {
    await this.db.updateTable("workers").set(patch).where("id", "=", workerId).execute();
  }

  async recordDestroyFailure(workerId: string, error: string): Promise<void> {
    await this.db
      .updateTable("workers")
      .set((eb) => ({ destroy_attempts: eb("destroy_attempts", "+", 1), last_error: error }))
      .where("id", "=", workerId)
      .execute();
  }

  /** One page of workers in `states`, in id order after `afterId`: passes walk all of them in bounded reads. */
  async listPage(states: readonly WorkerState[], afterId: string, limit: number): Promise<WorkerRow[]> {
    return this.db.selectFrom("workers").selectAll().where("state", "in", states).where("id", ">", afterId).orderBy("id").limit(limit).execute();
  }
}
