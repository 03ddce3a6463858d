/**
 * Every read and write of the control plane's state. Each state change is one guarded statement
 * (`... where state in (...)`): the loser of a race gets null and moves on. Multi-row changes that
 * must agree (a job and its worker) run in one transaction. Times are epoch ms from the caller.
 */
import { type Kysely, sql } from "kysely";
import { jobStatesLeadingTo, type JobState } from "../core/job-state.js";
import type { JobSpec } from "../core/job-spec.js";
import { workerStatesLeadingTo, type WorkerState, LIVE_WORKER_STATES } from "../core/worker-state.js";
import type { ResourceType } from "../core/worker-state.js";
import type { DatabaseKind } from "./database.js";
import type { Database, JobRow, JobsTable, LogRow, OtpTokenRow, WorkerRow, WorkersTable } from "./schema.js";

export interface NewWorker {
  id: string;
  name: string;
  jobId: string;
  attempt: number;
  provider: string;
  registrationDeadlineMs: number;
}

export interface NewToken {
  id: string;
  tokenHash: string;
  expiresAtMs: number;
}

export interface LogChunkInput {
  seq: number;
  stream: string;
  data: string;
  timeMs: number;
}

export interface JobListQuery {
  states?: JobState[];
  provider?: string;
  limit: number;
  /** Only jobs strictly older than this (created_at, id) position. */
  before?: { createdAt: number; id: string };
}

type JobPatch = Partial<
  Pick<JobsTable, "exit_code" | "reason" | "logs_truncated" | "logs_incomplete" | "not_before_ms" | "finished_at" | "max_attempts">
>;
type WorkerPatch = Partial<
  Pick<WorkersTable, "failure_reason" | "finished_at" | "stop_deadline_ms" | "last_error" | "destroyed_at" | "started_at">
>;

export class Store {
  constructor(
    readonly db: Kysely<Database>,
    readonly kind: DatabaseKind,
  ) {}

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // ---- jobs -------------------------------------------------------------------------------

  /**
   * Stores a validated spec as a queued job. With an idempotency key already used, returns the first
   * job. The insert itself yields to an existing key (ON CONFLICT DO NOTHING), so two concurrent
   * submits with one key both get the first job instead of one of them a unique-constraint error.
   */
  async insertJob(id: string, spec: JobSpec, nowMs: number): Promise<JobRow> {
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
        exit_code: null,
        reason: "",
        logs_truncated: 0,
        logs_incomplete: 0,
        not_before_ms: nowMs,
        created_at: nowMs,
        updated_at: nowMs,
        finished_at: null,
      })
      .$if(key !== null, (qb) => qb.onConflict((oc) => oc.column("idempotency_key").doNothing()))
      .returningAll()
      .executeTakeFirst();
    if (inserted) return inserted;
    // Only a used idempotency key makes the insert yield no row.
    return this.db.selectFrom("jobs").selectAll().where("idempotency_key", "=", spec.idempotencyKey).executeTakeFirstOrThrow();
  }

  async getJob(id: string): Promise<JobRow | undefined> {
    return this.db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Jobs by id, in one query. */
  async getJobs(ids: string[]): Promise<Map<string, JobRow>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom("jobs").selectAll().where("id", "in", [...new Set(ids)]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }

  async listJobs(query: JobListQuery): Promise<JobRow[]> {
    let q = this.db.selectFrom("jobs").selectAll();
    if (query.states && query.states.length > 0) q = q.where("state", "in", query.states);
    if (query.provider) q = q.where("provider", "=", query.provider);
    if (query.before) {
      const { createdAt, id } = query.before;
      q = q.where((eb) => eb.or([eb("created_at", "<", createdAt), eb.and([eb("created_at", "=", createdAt), eb("id", "<", id)])]));
    }
    return q.orderBy("created_at", "desc").orderBy("id", "desc").limit(query.limit).execute();
  }

  /**
   * Claims the oldest due queued job of one of `providers` for provisioning and counts the
   * attempt. One statement; with several schedulers each job goes to exactly one.
   */
  async claimQueuedJob(providers: string[], nowMs: number): Promise<JobRow | null> {
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
   */
  async transitionJob(id: string, to: JobState, nowMs: number, patch: JobPatch = {}, attempt?: number): Promise<JobRow | null> {
    const row = await this.db
      .updateTable("jobs")
      .set({ ...patch, state: to, updated_at: nowMs })
      .where("id", "=", id)
      .where("state", "in", jobStatesLeadingTo(to))
      .$if(attempt !== undefined, (qb) => qb.where("attempts", "=", attempt!))
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  async countLiveWorkersByProvider(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom("workers")
      .select(["provider", (eb) => eb.fn.countAll<number>().as("n")])
      .where("state", "in", LIVE_WORKER_STATES)
      .groupBy("provider")
      .execute();
    return new Map(rows.map((r) => [r.provider, Number(r.n)]));
  }

  // ---- workers and OTP tokens -----------------------------------------------------------------

  /**
   * Claims the oldest due queued job (as claimQueuedJob) and writes its worker row and OTP token
   * row (hash only) in the same transaction, so a crash never leaves a claimed job without a worker.
   */
  async claimJobForWorker(
    providers: string[],
    nowMs: number,
    prepare: (job: JobRow) => { worker: NewWorker; token: NewToken },
  ): Promise<{ job: JobRow; worker: WorkerRow } | null> {
    if (providers.length === 0) return null;
    return this.db.transaction().execute(async (trx) => {
      const job = await new Store(trx, this.kind).claimQueuedJob(providers, nowMs);
      if (!job) return null;
      const { worker, token } = prepare(job);
      const row = await insertWorkerRows(trx, worker, token, nowMs);
      return { job, worker: row };
    });
  }

  /** The worker row and its OTP token row, written together before the provider is asked. */
  async insertWorkerWithToken(worker: NewWorker, token: NewToken, nowMs: number): Promise<WorkerRow> {
    return this.db.transaction().execute((trx) => insertWorkerRows(trx, worker, token, nowMs));
  }

  /** Records the provider_resource_id on the worker and its token: provisioning -> waiting. */
  async recordProvisioned(workerId: string, resourceId: string, resourceType: ResourceType, nowMs: number): Promise<WorkerRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable("workers")
        .set({ state: "waiting", provider_resource_id: resourceId, resource_type: resourceType, provisioned_at: nowMs })
        .where("id", "=", workerId)
        .where("state", "in", workerStatesLeadingTo("waiting"))
        .returningAll()
        .executeTakeFirst();
      // The token learns the resource id even if the worker was meanwhile marked for destruction,
      // so the record of what was created stays complete.
      await tx
        .updateTable("otp_tokens")
        .set({ provider_resource_id: resourceId, resource_type: resourceType })
        .where("worker_id", "=", workerId)
        .execute();
      if (!row) {
        await tx
          .updateTable("workers")
          .set({ provider_resource_id: resourceId, resource_type: resourceType })
          .where("id", "=", workerId)
          .where("provider_resource_id", "is", null)
          .execute();
      }
      return row ?? null;
    });
  }

  /**
   * Consumes an OTP token: hash matches, not consumed, not expired, and its worker's
   * provider_resource_id already recorded. Null when any of these fails; nothing changes then.
   */
  async consumeToken(tokenHash: string, nowMs: number): Promise<OtpTokenRow | null> {
    const row = await this.db
      .updateTable("otp_tokens")
      .set({ consumed_at: nowMs })
      .where("token_hash", "=", tokenHash)
      .where("consumed_at", "is", null)
      .where("expires_at", ">", nowMs)
      .where("provider_resource_id", "is not", null)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  async getTokenByHash(tokenHash: string): Promise<OtpTokenRow | undefined> {
    return this.db.selectFrom("otp_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
  }

  async listTokens(limit: number): Promise<OtpTokenRow[]> {
    return this.db.selectFrom("otp_tokens").selectAll().orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
  }

  /** waiting -> registered, storing the session's hash. */
  async registerWorker(workerId: string, sessionHash: string, hostname: string, nowMs: number): Promise<WorkerRow | null> {
    const row = await this.db
      .updateTable("workers")
      .set({ state: "registered", session_hash: sessionHash, reported_hostname: hostname, registered_at: nowMs, last_heartbeat_ms: nowMs })
      .where("id", "=", workerId)
      .where("state", "in", workerStatesLeadingTo("registered"))
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  async getWorker(id: string): Promise<WorkerRow | undefined> {
    return this.db.selectFrom("workers").selectAll().where("id", "=", id).executeTakeFirst();
  }

  async getWorkerBySession(sessionHash: string): Promise<WorkerRow | undefined> {
    return this.db.selectFrom("workers").selectAll().where("session_hash", "=", sessionHash).executeTakeFirst();
  }

  /** The worker a provider knows by resourceId, while it still works on its attempt. */
  async findActiveWorkerByResource(provider: string, resourceId: string): Promise<WorkerRow | undefined> {
    return this.db
      .selectFrom("workers")
      .selectAll()
      .where("provider", "=", provider)
      .where("provider_resource_id", "=", resourceId)
      .where("state", "in", ["waiting", "registered", "running"])
      .executeTakeFirst();
  }

  async listWorkersOfJob(jobId: string): Promise<WorkerRow[]> {
    return this.db.selectFrom("workers").selectAll().where("job_id", "=", jobId).orderBy("attempt").execute();
  }

  async listWorkers(states: readonly WorkerState[] | null, limit: number): Promise<WorkerRow[]> {
    let q = this.db.selectFrom("workers").selectAll();
    if (states) q = q.where("state", "in", states);
    return q.orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
  }

  /** Dispatch: worker registered -> running and job provisioning -> running, together or not at all. */
  async markDispatched(worker: WorkerRow, nowMs: number): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const job = await tx
        .updateTable("jobs")
        .set({ state: "running", updated_at: nowMs })
        .where("id", "=", worker.job_id)
        .where("attempts", "=", worker.attempt)
        .where("state", "=", "provisioning")
        .returning("id")
        .executeTakeFirst();
      if (!job) return false;
      const moved = await tx
        .updateTable("workers")
        .set({ state: "running", started_at: nowMs })
        .where("id", "=", worker.id)
        .where("state", "=", "registered")
        .returning("id")
        .executeTakeFirst();
      if (!moved) {
        // Lost a race with the reconciler (the worker is being destroyed): undo the job's move.
        await tx.updateTable("jobs").set({ state: "provisioning", updated_at: nowMs }).where("id", "=", worker.job_id).where("state", "=", "running").execute();
        return false;
      }
      return true;
    });
  }

  async recordHeartbeat(workerId: string, nowMs: number): Promise<void> {
    await this.db.updateTable("workers").set({ last_heartbeat_ms: nowMs }).where("id", "=", workerId).execute();
  }

  /** Moves a worker to `to` if legal from its current state. */
  async transitionWorker(workerId: string, to: WorkerState, patch: WorkerPatch = {}): Promise<WorkerRow | null> {
    const row = await this.db
      .updateTable("workers")
      .set({ ...patch, state: to })
      .where("id", "=", workerId)
      .where("state", "in", workerStatesLeadingTo(to))
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  async setWorkerFields(workerId: string, patch: WorkerPatch): Promise<void> {
    await this.db.updateTable("workers").set(patch).where("id", "=", workerId).execute();
  }

  async recordDestroyFailure(workerId: string, error: string): Promise<void> {
    await this.db
      .updateTable("workers")
      .set((eb) => ({ destroy_attempts: eb("destroy_attempts", "+", 1), last_error: error }))
      .where("id", "=", workerId)
      .execute();
  }

  /**
   * Ends an attempt: the job moves to `to` (guarded by state and attempt number) and its worker
   * to destroying, in one transaction. Returns the job row, or null if the attempt had already ended.
   */
  async endAttempt(
    worker: WorkerRow,
    to: JobState,
    nowMs: number,
    jobPatch: JobPatch,
    failureReason: string,
  ): Promise<JobRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const job = await tx
        .updateTable("jobs")
        .set({ ...jobPatch, state: to, updated_at: nowMs })
        .where("id", "=", worker.job_id)
        .where("attempts", "=", worker.attempt)
        .where("state", "in", jobStatesLeadingTo(to))
        .returningAll()
        .executeTakeFirst();
      await tx
        .updateTable("workers")
        .set({ state: "destroying", finished_at: nowMs, failure_reason: failureReason })
        .where("id", "=", worker.id)
        .where("state", "in", workerStatesLeadingTo("destroying"))
        .execute();
      // An attempt that ended revokes its OTP token if it was never redeemed.
      await tx
        .updateTable("otp_tokens")
        .set({ expires_at: nowMs })
        .where("worker_id", "=", worker.id)
        .where("consumed_at", "is", null)
        .where("expires_at", ">", nowMs)
        .execute();
      return job ?? null;
    });
  }

  // ---- logs -----------------------------------------------------------------------------------

  /** Stores chunks; a chunk already stored (a resend after reconnect) is ignored. */
  async appendLogs(jobId: string, attempt: number, chunks: LogChunkInput[]): Promise<void> {
    if (chunks.length === 0) return;
    await this.db
      .insertInto("job_logs")
      .values(chunks.map((c) => ({ job_id: jobId, attempt, seq: c.seq, stream: c.stream, data: c.data, time_ms: c.timeMs })))
      .onConflict((oc) => oc.columns(["job_id", "attempt", "seq"]).doNothing())
      .execute();
  }

  /** How many chunks of an attempt are stored with seq <= upTo (complete when it equals upTo). */
  async countLogChunks(jobId: string, attempt: number, upTo: number): Promise<number> {
    const row = await this.db
      .selectFrom("job_logs")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("job_id", "=", jobId)
      .where("attempt", "=", attempt)
      .where("seq", "<=", upTo)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async maxLogSeq(jobId: string, attempt: number): Promise<number> {
    const row = await this.db
      .selectFrom("job_logs")
      .select((eb) => eb.fn.max("seq").as("m"))
      .where("job_id", "=", jobId)
      .where("attempt", "=", attempt)
      .executeTakeFirst();
    return Number(row?.m ?? 0);
  }

  async readLogs(jobId: string, afterCursor: number, limit: number): Promise<LogRow[]> {
    return this.db
      .selectFrom("job_logs")
      .selectAll()
      .where("job_id", "=", jobId)
      .where("id", ">", afterCursor)
      .orderBy("id")
      .limit(limit)
      .execute();
  }

  /** Raw access for tests and diagnostics. */
  async countRows(table: keyof Database): Promise<number> {
    const row = await this.db
      .selectFrom(table)
      .select(sql<number>`count(*)`.as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

async function insertWorkerRows(tx: Kysely<Database>, worker: NewWorker, token: NewToken, nowMs: number): Promise<WorkerRow> {
  const row = await tx
    .insertInto("workers")
    .values({
      id: worker.id,
      name: worker.name,
      job_id: worker.jobId,
      attempt: worker.attempt,
      provider: worker.provider,
      provider_resource_id: null,
      resource_type: null,
      state: "provisioning",
      session_hash: null,
      reported_hostname: null,
      created_at: nowMs,
      provisioned_at: null,
      registered_at: null,
      started_at: null,
      finished_at: null,
      destroyed_at: null,
      registration_deadline_ms: worker.registrationDeadlineMs,
      last_heartbeat_ms: null,
      stop_deadline_ms: null,
      failure_reason: "",
      destroy_attempts: 0,
      last_error: "",
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await tx
    .insertInto("otp_tokens")
    .values({
      id: token.id,
      token_hash: token.tokenHash,
      job_id: worker.jobId,
      attempt: worker.attempt,
      worker_id: worker.id,
      provider: worker.provider,
      provider_resource_id: null,
      resource_type: null,
      created_at: nowMs,
      expires_at: token.expiresAtMs,
      consumed_at: null,
    })
    .execute();
  return row;
}
