/**
 * Queries on the jobs table. Every state change is one statement guarded by the job state machine
 * (`where state in jobStatesLeadingTo(to)`): the loser of a race gets null and moves on.
 */
import { type Kysely, sql } from "kysely";
import { jobStatesLeadingTo, type JobState } from "../core/job-state.js";
import { dueAtMs, type JobSpec } from "../core/job-spec.js";
import { specHash } from "../core/spec-hash.js";
import type { DatabaseKind } from "./database.js";
import { insertJobLabels, type LabelTerm, selectLabelledJobs } from "./job-labels.js";
import { firstRow } from "./compiled.js";
import type { Database, JobRow, JobsTable } from "./schema.js";

/**
 * `state = 'queued'` with the state written into the statement: the partial index jobs_queue holds
 * queued jobs only, and SQLite can use it for a bound `state = ?` only by preparing the statement
 * again at every binding (migration 0032).
 */
export const QUEUED = sql.lit<"queued">("queued");

export interface JobListQuery {
  states?: JobState[];
  provider?: string;
  limit: number;
  /** Only jobs strictly older than this (created_at, id) position. */
  before?: { createdAt: number; id: string };
  /** Only jobs with every one of these labels (key = value). */
  labels?: LabelTerm[];
}

/** A bounded command search (JobQueries.searchCommands): the filters of a listing plus the text. */
export interface JobSearchQuery extends JobListQuery {
  /** Lowercase text to find in the command (its arguments joined by spaces) or the script. */
  text: string;
  /** At most this many jobs are examined (newest first from `before`); `limit` caps the matches. */
  examineLimit: number;
}

export interface JobSearchResult {
  /** Matching jobs, newest first, at most `limit`. */
  jobs: JobRow[];
  /** How many jobs were examined. */
  examined: number;
  /**
   * Where to continue from: the last match when the page filled with more jobs to examine, the
   * last job examined when the bound was reached first; null when history was examined to its end.
   */
  next: { createdAt: number; id: string } | null;
  /** The bound was reached before the page filled: older jobs may still match. */
  isPartial: boolean;
}

export type JobPatch = Partial<
  Pick<JobsTable, "exit_code" | "reason" | "logs_truncated" | "logs_incomplete" | "not_before_ms" | "finished_at" | "queue_deadline_ms">
>;

/**
 * Writes a new job (its row and label rows) inside the caller's transaction and returns it, or the
 * job that already holds its idempotency key (then nothing is written). Without labels the row is
 * its only write, and `tx` may be the database itself (SecretQueries.insertJob).
 */
export async function insertJobRows(
  tx: Kysely<Database>,
  kind: DatabaseKind,
  id: string,
  spec: JobSpec,
  nowMs: number,
  submittedBy: string | null,
  rerunOf: string | null,
  scheduleName: string | null = null,
): Promise<JobRow> {
  const inserted = await new JobQueries(tx, kind).insertRow(id, spec, nowMs, submittedBy, rerunOf, scheduleName);
  if (inserted) await insertJobLabels(tx, id, spec.labels, nowMs);
  // Only a used idempotency key makes the insert yield no row.
  return inserted ?? tx.selectFrom("jobs").selectAll().where("idempotency_key", "=", storedIdempotencyKey(submittedBy, spec.idempotencyKey)).executeTakeFirstOrThrow();
}

/**
 * An idempotency key as stored: in the namespace of the API key that submits it, "<name>:<key>"
 * ("" for no key: auth off). One API key's idempotency keys never meet another's, as Stripe scopes
 * them to an account: a key cannot take the keys another will use (CI build numbers are
 * predictable) and have that one's submits refused. API key names never hold ":"
 * (server/key-service.ts), so the form is unambiguous. A rotated API key starts a new namespace.
 */
export function storedIdempotencyKey(submittedBy: string | null, key: string): string {
  return `${submittedBy ?? ""}:${key}`;
}

export class JobQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
  ) {}

  /**
   * Stores a validated spec as a queued job. With an idempotency key this API key already used,
   * returns the first job. The insert itself yields to an existing key (ON CONFLICT DO NOTHING), so two concurrent
   * submits with one key both get the first job instead of one of them a unique-constraint error.
   * submittedBy: the name of the API key that submits it (null: none, auth off). rerunOf: the id of
   * the job it reruns (RerunJob; null: submitted directly).
   * The job and its label rows are written in one transaction (SecretQueries.insertJob adds its
   * secrets to that transaction through insertJobRows).
   */
  async insert(id: string, spec: JobSpec, nowMs: number, submittedBy: string | null = null, rerunOf: string | null = null): Promise<JobRow> {
    return this.db.transaction().execute((tx) => insertJobRows(tx, this.kind, id, spec, nowMs, submittedBy, rerunOf));
  }

  /** The jobs row alone; undefined when its idempotency key is already used. scheduleName: the schedule firing it. */
  async insertRow(id: string, spec: JobSpec, nowMs: number, submittedBy: string | null, rerunOf: string | null, scheduleName: string | null = null): Promise<JobRow | undefined> {
    const key = spec.idempotencyKey ? storedIdempotencyKey(submittedBy, spec.idempotencyKey) : null;
    const runAtMs = dueAtMs(spec, nowMs);
    return this.db
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
        not_before_ms: runAtMs,
        created_at: nowMs,
        updated_at: nowMs,
        finished_at: null,
        submitted_by: submittedBy,
        retry_on_exit_codes: spec.retryOnExitCodes,
        rerun_of: rerunOf,
        schedule_name: scheduleName,
        // Names only: the values are sealed and stored by SecretQueries.insertJob.
        secret_names: JSON.stringify(Object.keys(spec.secrets).sort()),
        priority: spec.priority,
        queue_timeout_seconds: spec.queueTimeoutSeconds,
        run_at_ms: runAtMs,
        queue_deadline_ms: spec.queueTimeoutSeconds > 0 ? runAtMs + spec.queueTimeoutSeconds * 1000 : null,
        spec_hash: specHash(spec),
        // Resources: provider details per job.
        pull_policy: spec.pullPolicy,
        node_selector: JSON.stringify(spec.nodeSelector),
        tolerations: JSON.stringify(spec.tolerations),
        trace_id: spec.trace?.traceId ?? "",
        trace_parent: spec.trace?.traceParent ?? "",
        notify: JSON.stringify(spec.notify ?? []),
      })
      .$if(key !== null, (qb) => qb.onConflict((oc) => oc.column("idempotency_key").doNothing()))
      .returningAll()
      .executeTakeFirst();
  }

  async get(id: string): Promise<JobRow | undefined> {
    return firstRow(this.db, "jobs.get", [id], (p) => this.db.selectFrom("jobs").selectAll().where("id", "=", p(0)));
  }

  /** Jobs by id, in one query. */
  async getMany(ids: string[]): Promise<Map<string, JobRow>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom("jobs").selectAll().where("id", "in", [...new Set(ids)]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }

  /**
   * The state, attempt and reason of each job, in one query by primary key: every replica asks it
   * every ~250 ms for the jobs of the agents connected to it (a cancel made elsewhere), so it reads
   * no more than that.
   */
  async getStates(ids: string[]): Promise<Map<string, Pick<JobRow, "id" | "state" | "attempts" | "reason">>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom("jobs").select(["id", "state", "attempts", "reason"]).where("id", "in", [...new Set(ids)]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }

  /**
   * Ids of the jobs an API key submitted that have not started their command (queued, including
   * those waiting for a retry, or provisioning), oldest first, at most `limit`: what a revocation
   * cancels. Read through each state's range of jobs_state_created_id.
   */
  async notStartedIdsOf(keyName: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom("jobs")
      .select("id")
      .where("state", "in", ["queued", "provisioning"])
      .where("submitted_by", "=", keyName)
      .orderBy("created_at")
      .orderBy("id")
      .limit(limit)
      .execute();
    return rows.map((row) => row.id);
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
    // With labels, the part is read from job_labels (job-labels.ts), a label's newest jobs first.
    if (query.labels?.length) return selectLabelledJobs(this.db, query.labels, { ...query, state });
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
   * Jobs whose id starts with `prefix`: one range of the primary key ([prefix, prefix with its last
   * character incremented)), at most `limit` rows, whatever the size of history. Ids are lowercase
   * UUIDs, so the caller passes only [0-9a-f-] (compared bytewise on both databases, migration 0021).
   */
  async listByIdPrefix(prefix: string, limit: number): Promise<JobRow[]> {
    if (!/^[0-9a-f-]+$/.test(prefix)) return [];
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    return this.db.selectFrom("jobs").selectAll().where("id", ">=", prefix).where("id", "<", end).orderBy("id").limit(limit).execute();
  }

  /**
   * The command search, bounded in rows examined: the listing's jobs (the same index ranges as
   * list(), from `before`) are read newest first in chunks of SEARCH_CHUNK and matched here against
   * the command as shown (arguments joined by spaces) and the script, until the page is full or
   * `examineLimit` jobs were examined. A call never reads more than that, whatever the size of
   * history; the caller continues from `next` when `isPartial`.
   */
  async searchCommands(query: JobSearchQuery): Promise<JobSearchResult> {
    const jobs: JobRow[] = [];
    let examined = 0;
    let before = query.before;
    while (examined < query.examineLimit) {
      const size = Math.min(SEARCH_CHUNK, query.examineLimit - examined);
      const chunk = await this.list({ ...query, before, limit: size });
      for (const row of chunk) {
        if (!commandText(row).includes(query.text)) continue;
        if (jobs.length === query.limit) {
          // One more match exists: the page is full and continues after its last job.
          const last = jobs[jobs.length - 1];
          return { jobs, examined: examined + chunk.indexOf(row), next: { createdAt: last.created_at, id: last.id }, isPartial: false };
        }
        jobs.push(row);
      }
      examined += chunk.length;
      // A short chunk: history ends here.
      if (chunk.length < size) return { jobs, examined, next: null, isPartial: false };
      const last = chunk[chunk.length - 1];
      before = { createdAt: last.created_at, id: last.id };
    }
    return { jobs, examined, next: before ?? null, isPartial: true };
  }

  /**
   * Queued jobs counted by provider and priority, split into due ones (not_before_ms <= nowMs:
   * waiting for a worker) and delayed ones (a later run-at, a retry backoff), for the queue gauges.
   * Reads the queued range of jobs_queue only: its cost grows with the queue, not with history.
   */
  async countQueued(nowMs: number): Promise<{ provider: string; priority: number; isDue: boolean; count: number }[]> {
    const rows = await this.db
      .selectFrom("jobs")
      .select((eb) => [
        "provider",
        "priority",
        eb.case().when("not_before_ms", "<=", nowMs).then(1).else(0).end().as("due"),
        eb.fn.countAll<number>().as("n"),
      ])
      .where("state", "=", QUEUED)
      .groupBy(["provider", "priority", "due"])
      .execute();
    return rows.map((r) => ({ provider: r.provider, priority: Number(r.priority), isDue: Number(r.due) === 1, count: Number(r.n) }));
  }

  /**
   * Moves a job to `to` if the transition is legal from its current state (and, when given, only
   * while `attempt` is its current attempt). Null when the job was not in such a state.
   * `isUncounted` records that the attempt ending here is not counted against max_attempts.
   */
  async transition(id: string, to: JobState, nowMs: number, patch: JobPatch = {}, attempt?: number, isUncounted = false): Promise<JobRow | null> {
    // Compiled once per target state, set of patched columns and optional clause (store/compiled.ts).
    // A column set to undefined is left out, as Kysely's set() leaves it out.
    const columns = (Object.keys(patch) as (keyof JobPatch)[]).filter((c) => patch[c] !== undefined);
    const key = `jobs.transition:${to}:${columns.join(",")}:${attempt !== undefined}:${isUncounted}`;
    const row = await firstRow(this.db, key, [id, nowMs, attempt, ...columns.map((c) => patch[c])], (p) =>
      this.db
        .updateTable("jobs")
        .set({ ...Object.fromEntries(columns.map((c, i) => [c, p(i + 3)])), state: to, updated_at: p(1) })
        .$if(isUncounted, (qb) => qb.set((eb) => ({ uncounted_attempts: eb("uncounted_attempts", "+", 1) })))
        .where("id", "=", p(0))
        .where("state", "in", jobStatesLeadingTo(to))
        .$if(attempt !== undefined, (qb) => qb.where("attempts", "=", p(2)))
        .returningAll(),
    );
    return row ?? null;
  }

  /** Says why queued jobs of a provider wait (its reason until they start or end). */
  async noteWaiting(provider: string, reason: string): Promise<void> {
    await this.db.updateTable("jobs").set({ reason }).where("state", "=", QUEUED).where("provider", "=", provider).where("reason", "!=", reason).execute();
  }

  /**
   * Jobs in `state` whose queue deadline (wall time) is at or before nowMs, in deadline order after
   * the (deadlineMs, id) position: one range of jobs_queue_deadline. The caller judges each by
   * present time (scheduler/queue-deadlines.ts). The state is written into the statement: bound,
   * SQLite would weigh it against jobs_queue's `state = 'queued'` and prepare the statement again
   * each time the state it is given changes (every pass asks for both).
   */
  async listPastQueueDeadline(state: "queued" | "provisioning", nowMs: number, after: { deadlineMs: number; id: string } | null, limit: number): Promise<JobRow[]> {
    return this.db
      .selectFrom("jobs")
      .selectAll()
      .where("state", "=", sql.lit(state))
      .where("queue_deadline_ms", "<=", nowMs)
      .$if(after !== null, (qb) => qb.where((eb) => eb(eb.refTuple("queue_deadline_ms", "id"), ">", eb.tuple(after!.deadlineMs, after!.id))))
      .orderBy("queue_deadline_ms")
      .orderBy("id")
      .limit(limit)
      .execute();
  }

  /**
   * A job that never started ends timed_out (its queue timeout): only while it is queued or
   * provisioning with its queue deadline still set (dispatch clears it) and passed at nowMs. Null
   * when it started, ended or has no such deadline meanwhile.
   */
  async timeOutUnstarted(id: string, nowMs: number, reason: string): Promise<JobRow | null> {
    const row = await this.db
      .updateTable("jobs")
      .set({ state: "timed_out", reason, finished_at: nowMs, updated_at: nowMs })
      .where("id", "=", id)
      .where("state", "in", NOT_STARTED_STATES)
      .where("queue_deadline_ms", "<=", nowMs)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }
}

/** The command search reads the listing in chunks of this many jobs (so a full page stops it early). */
const SEARCH_CHUNK = 500;

/** What the command search matches: the command's arguments joined by spaces, and the script, lowercase. */
function commandText(row: Pick<JobRow, "command" | "script">): string {
  const args = JSON.parse(row.command) as string[];
  return `${args.join(" ")}\n${row.script}`.toLowerCase();
}

/** The states of a job that may not have started; both may lead to timed_out (core/job-state.ts). */
const NOT_STARTED_STATES = (["queued", "provisioning"] as const).filter((state) => jobStatesLeadingTo("timed_out").includes(state));
