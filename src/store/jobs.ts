/**
 * Queries on the jobs table. Every state change is one statement guarded by the job state machine
 * (`where state in jobStatesLeadingTo(to)`): the loser of a race gets null and moves on.
 */
import type { Kysely } from "kysely";
import { jobStatesLeadingTo, type JobState } from "../core/job-state.js";
import type { JobSpec } from "../core/job-spec.js";
import type { DatabaseKind } from "./database.js";
import type { Database, JobRow, JobsTable } from "./schema.js";

export interface JobListQuery {
  states?: JobState[];
  provider?: string;
  limit: number;
  /** Only jobs strictly older than this (created_at, id) position. */
  before?: { createdAt: number; id: string };
}

export type JobPatch = Partial<
  Pick<JobsTable, "exit_code" | "reason" | "logs_truncated" | "logs_incomplete" | "not_before_ms" | "finished_at">
>;

export class JobQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
  ) {}

  /**
   * Stores a validated spec as a queued job. With an idempotency key already used, returns the first
   * job. The insert itself yields to an existing key (ON CONFLICT DO NOTHING), so two concurrent
   * submits with one key both get the first job instead of one of them a unique-constraint error.
   * submittedBy: the name of the API key that submits it (null: none, auth off).
   */
  async insert(id: string, spec: JobSpec, nowMs: number, submittedBy: string | null = null): Promise<JobRow> {
    const key = spec.idempotencyKey || null;
    const inserted = await this.db
      .insertInto("jobs")
      .values({
        id,
        state: "queued",
        command: JSON.stringify(spec.command),
        script: spec.script,
        provider: spec.provider,
        env: JSON.stringify(spec.env),
        timeout_seconds: spec.timeoutSeconds,
        labels: JSON.stringify(spec.labels),
        image: spec.image,
        cpu_millis: spec.cpuMillis,
        memory_mb: spec.memoryMb,
        idempotency_key: key,
        max_attempts: spec.maxAttempts,
        attempts: 0,
        uncounted_attempts: 0,
        exit_code: null,
        reason: "",
        logs_truncated: 0,
        logs_incomplete: 0,
        not_before_ms: nowMs,
        created_at: nowMs,
        updated_at: nowMs,
        finished_at: null,
        submitted_by: submittedBy,
        // Resources: provider details per job.
        pull_policy: spec.pullPolicy,
        node_selector: JSON.stringify(spec.nodeSelector),
        tolerations: JSON.stringify(spec.tolerations),
      })
      .$if(key !== null, (qb) => qb.onConflict((oc) => oc.column("idempotency_key").doNothing()))
      .returningAll()
      .executeTakeFirst();
    if (inserted) return inserted;
    // Only a used idempotency key makes the insert yield no row.
    return this.db.selectFrom("jobs").selectAll().where("idempotency_key", "=", spec.idempotencyKey).executeTakeFirstOrThrow();
  }

  async get(id: string): Promise<JobRow | undefined> {
    return this.db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Jobs by id, in one query. */
  async getMany(ids: string[]): Promise<Map<string, JobRow>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom("jobs").selectAll().where("id", "in", [...new Set(ids)]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }

  /**
   * Newest first. With several states, the newest `limit` jobs of each state are read (each one
   * range of jobs_state_created_id) and merged: `state in (...)` would read and sort every job in
   * those states, which for finished states is the whole history.
   */
  async list(query: JobListQuery): Promise<JobRow[]> {
    const states = [...new Set(query.states ?? [])];
    if (states.length <= 1) return this.listPart(query, states[0]).execute();
    const [first, ...rest] = states.map((state) => this.db.selectFrom(this.listPart(query, state).as("part")).selectAll());
    const merged = rest.reduce((union, part) => union.unionAll(part), first);
    return this.db.selectFrom(merged.as("merged")).selectAll().orderBy("created_at", "desc").orderBy("id", "desc").limit(query.limit).execute();
  }

  private listPart(query: JobListQuery, state: JobState | undefined) {
    let q = this.db.selectFrom("jobs").selectAll();
    if (state) q = q.where("state", "=", state);
    if (query.provider) q = q.where("provider", "=", query.provider);
    if (query.before) {
      const { createdAt, id } = query.before;
      // A row-value comparison, so that the index range starts at the position (an OR of the two
      // conditions would walk the index from the newest job, a cost that grows with each page).
      q = q.where((eb) => eb(eb.refTuple("created_at", "id"), "<", eb.tuple(createdAt, id)));
    }
    return q.orderBy("created_at", "desc").orderBy("id", "desc").limit(query.limit);
  }

  /**
   * Claims the oldest due queued job of one of `providers` for provisioning and counts the
   * attempt. One statement; with several schedulers each job goes to exactly one.
   */
  async claimQueued(providers: string[], nowMs: number): Promise<JobRow | null> {
    if (providers.length === 0) return null;
    const row = await this.db
      .updateTable("jobs")
      .set((eb) => ({ state: "provisioning", attempts: eb("attempts", "+", 1), updated_at: nowMs }))
      .where("id", "=", (eb) =>
        eb
          .selectFrom("jobs")
          .select("id")
          .where("state", "=", "queued")
          .where("not_before_ms", "<=", nowMs)
          .where("provider", "in", providers)
          .orderBy("created_at")
          .orderBy("id")
          .limit(1)
          .$if(this.kind === "postgres", (qb) => qb.forUpdate().skipLocked()),
      )
      .where("state", "=", "queued")
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /**
   * Moves a job to `to` if the transition is legal from its current state (and, when given, only
   * while `attempt` is its current attempt). Null when the job was not in such a state.
   * `isUncounted` records that the attempt ending here is not counted against max_attempts.
   */
  async transition(id: string, to: JobState, nowMs: number, patch: JobPatch = {}, attempt?: number, isUncounted = false): Promise<JobRow | null> {
    const row = await this.db
      .updateTable("jobs")
      .set({ ...patch, state: to, updated_at: nowMs })
      .$if(isUncounted, (qb) => qb.set((eb) => ({ uncounted_attempts: eb("uncounted_attempts", "+", 1) })))
      .where("id", "=", id)
      .where("state", "in", jobStatesLeadingTo(to))
      .$if(attempt !== undefined, (qb) => qb.where("attempts", "=", attempt!))
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** Says why queued jobs of a provider wait (its reason until they start or end). */
  async noteWaiting(provider: string, reason: string): Promise<void> {
    await this.db.updateTable("jobs").set({ reason }).where("state", "=", "queued").where("provider", "=", provider).where("reason", "!=", reason).execute();
  }
}
