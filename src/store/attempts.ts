/**
 * The operations on one attempt that write several tables together, each in one transaction:
 * claim (job + worker + OTP token), provisioned (worker + token learn the provider_resource_id),
 * register (worker gets a session), dispatch (job and worker to running), end (job to its next
 * state, worker to destroying, the unused token revoked). A crash between two of these leaves a
 * state the reconcile pass knows how to finish; a crash inside one leaves nothing half-written.
 *
 * A job becomes final in exactly three of them (end with a final state, cancel, the queue timeout),
 * and each calls finishJob: the job's secrets go and its webhook deliveries are written (at least
 * once: they exist exactly when the job is final).
 */
import { type Kysely, sql } from "kysely";
import { isTerminal, type JobState } from "../core/job-state.js";
import { LIVE_WORKER_STATES, workerStatesLeadingTo, type ResourceType, type WorkerState } from "../core/worker-state.js";
import type { DatabaseKind } from "./database.js";
import { type JobPatch, JobQueries, QUEUED } from "./jobs.js";
import { WorkerQueries } from "./workers.js";
import { deleteSecretsOfJobs } from "./secrets.js";
import { insertDeliveries } from "./webhooks.js";
import { newId } from "../core/ids.js";
import { firstRow, runCompiled } from "./compiled.js";
import type { Database, JobRow, WorkerRow } from "./schema.js";

export interface NewWorker {
  id: string;
  name: string;
  jobId: string;
  attempt: number;
  provider: string;
  registrationDeadlineMs: number;
  /** The node of the replica that starts it (HODEI_NODE_ID). */
  nodeId?: string | null;
  /** The replica whose start() is about to run: the start is in flight from the claim on. */
  startOwner?: string | null;
  /** Past this, a start still recorded as in flight is not trusted (its replica may have died). */
  startDeadlineMs?: number | null;
}

/** One batched claim: due queued jobs of one provider, as many as its capacity and `limit` allow. */
export interface ClaimRequest {
  provider: string;
  nowMs: number;
  /** Jobs claimed at most by this call (the batch size). */
  limit: number;
  /** The provider's capacity: a claim never takes live workers (in the database) past it. */
  maxWorkers: number;
  /** Count only the live workers of this node (a node-bound provider's capacity is per machine); null: all of the provider's. */
  nodeId: string | null;
}

export interface NewToken {
  id: string;
  tokenHash: string;
  expiresAtMs: number;
}

export class AttemptQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
    /** The server's webhook URLs (HODEI_WEBHOOK_URL), told of every job's end besides the job's own. */
    private readonly serverWebhookUrls: readonly string[] = [],
  ) {}

  /** What every transaction that makes a job final does besides the job's own row: see the module comment. */
  private async finishJob(tx: Kysely<Database>, job: JobRow, nowMs: number): Promise<void> {
    // A job without secrets has no rows to delete (secret_names lists them all since 0031): a
    // statement saved at the end of most jobs.
    if (job.secret_names !== "[]") await deleteSecretsOfJobs(tx, [job.id]);
    await insertDeliveries(tx, job, this.serverWebhookUrls, nowMs, newId);
  }

  /**
   * Claims up to `limit` due queued jobs of one provider in queue order (priority desc, created_at,
   * id), never taking its live workers past maxWorkers, and writes their worker and OTP token rows
   * in the same transaction. Empty when the queue is empty or the provider is full.
   *
   * Capacity is counted inside the claim, so two replicas cannot each fill the provider:
   * - SQLite: the count is a subquery of the claiming UPDATE, the transaction's first statement,
   *   which takes the database's single write lock as it starts (across processes too); no other
   *   claim can insert a worker between the count and the claim. (A read before the UPDATE in the
   *   same transaction would not be safe across processes: upgrading a read to a write in WAL mode
   *   fails with SQLITE_BUSY when another writer came between.)
   * - PostgreSQL: claims of one provider are serialized by a transaction-scoped advisory lock
   *   taken first; under READ COMMITTED the count, a new statement once the lock is held, sees the
   *   workers every earlier claim committed. FOR UPDATE SKIP LOCKED keeps claims of different
   *   providers (and any other writer of jobs) from blocking each other.
   */
  async claimBatch(req: ClaimRequest, prepare: (job: JobRow) => { worker: NewWorker; token: NewToken }): Promise<{ job: JobRow; worker: WorkerRow }[]> {
    if (req.limit <= 0 || req.maxWorkers <= 0) return [];
    return this.db.transaction().execute(async (trx) => {
      if (this.kind === "postgres") {
        const key = `hodei:claim:${req.provider}:${req.nodeId ?? ""}`;
        await sql`select pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
      }
      // The jobs to take are picked once, in a MATERIALIZED common table expression: on PostgreSQL
      // an `IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` may be evaluated more than once by the
      // plan, each time skipping the rows the last one locked, and so take more than n jobs.
      const jobs = await trx
        .with(
          (cte) => cte("picked").materialized(),
          (db) =>
            db
              .selectFrom("jobs")
              .select("id")
              .where("state", "=", QUEUED)
              .where("not_before_ms", "<=", req.nowMs)
              .where("provider", "=", req.provider)
              // A job whose API key was revoked never starts (RevokeKey cancels such jobs; this also
              // holds should a revocation's cancels not all have been written).
              .where((eb) => eb.not(eb.exists(eb.selectFrom("api_keys").select("api_keys.name").whereRef("api_keys.name", "=", "jobs.submitted_by").where("api_keys.revoked_at", "is not", null))))
              .orderBy("priority", "desc")
              .orderBy("created_at")
              .orderBy("id")
              .limit((eb) => {
                // Room left: maxWorkers minus the live workers, at most limit, never negative (SQLite
                // reads a negative LIMIT as none). CASE is the same in both dialects.
                const live = eb
                  .selectFrom("workers")
                  .select((w) => w.fn.countAll<number>().as("n"))
                  .where("provider", "=", req.provider)
                  .where("state", "in", LIVE_WORKER_STATES)
                  .$if(req.nodeId !== null, (qb) => qb.where("node_id", "=", req.nodeId!));
                const room = eb.case()
                  .when(live, ">=", req.maxWorkers).then(0)
                  .when(eb(eb.val(req.maxWorkers), "-", live), "<", req.limit).then(eb(eb.val(req.maxWorkers), "-", live))
                  .else(req.limit)
                  .end();
                return room;
              })
              .$if(this.kind === "postgres", (qb) => qb.forUpdate().skipLocked()),
        )
        .updateTable("jobs")
        .set((eb) => ({ state: "provisioning", attempts: eb("attempts", "+", 1), updated_at: req.nowMs }))
        .where("id", "in", (eb) => eb.selectFrom("picked").select("picked.id"))
        .where("state", "=", QUEUED)
        .returningAll()
        .execute();
      if (jobs.length === 0) return [];
      jobs.sort((a, b) => b.priority - a.priority || a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const prepared = jobs.map((job) => ({ job, ...prepare(job) }));
      const rows = await insertWorkerBatch(trx, prepared, req.nowMs);
      return prepared.map(({ job }, i) => ({ job, worker: rows[i] }));
    });
  }

  /**
   * The start() of a worker returned (either way): it is no longer in flight. Guarded by the owner,
   * so a late return of a start another replica took over does not clear that one's.
   */
  async endStart(workerId: string, owner: string): Promise<WorkerRow["state"] | null> {
    const row = await firstRow(this.db, "attempts.endStart", [workerId, owner], (p) =>
      this.db.updateTable("workers").set({ start_owner: null, start_deadline_ms: null }).where("id", "=", p(0)).where("start_owner", "=", p(1)).returning("state"),
    );
    return row?.state ?? null;
  }

  /**
   * Records the provider_resource_id on the worker and its token: provisioning -> waiting.
   * resourcesApplied: how the provider applied the job's resource limits, in words.
   * isStartDone: start() has returned, and its in-flight mark is cleared in the same statement.
   */
  async recordProvisioned(workerId: string, resourceId: string, resourceType: ResourceType, nowMs: number, resourcesApplied = "", isStartDone = false): Promise<WorkerRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const row = await firstRow(tx, `attempts.recordProvisioned:${isStartDone}`, [resourceId, resourceType, nowMs, resourcesApplied, workerId], (p) =>
        tx
          .updateTable("workers")
          .set({ state: "waiting", provider_resource_id: p(0), resource_type: p(1), provisioned_at: p(2), resources_applied: p(3) })
          // isStartDone: recorded after start() returned, so the start is no longer in flight (saves endStart's statement).
          .$if(isStartDone, (qb) => qb.set({ start_owner: null, start_deadline_ms: null }))
          .where("id", "=", p(4))
          .where("state", "in", workerStatesLeadingTo("waiting"))
          .returningAll(),
      );
      // The token learns the resource id even if the worker was meanwhile marked for destruction,
      // so the record of what was created stays complete.
      await runCompiled(tx, "attempts.recordProvisioned:token", [resourceId, resourceType, workerId], (p) =>
        tx.updateTable("otp_tokens").set({ provider_resource_id: p(0), resource_type: p(1) }).where("worker_id", "=", p(2)),
      );
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

  /** waiting -> registered, storing the session's hash. */
  async register(workerId: string, sessionHash: string, hostname: string, nowMs: number): Promise<WorkerRow | null> {
    const row = await firstRow(this.db, "attempts.register", [sessionHash, hostname, nowMs, workerId], (p) =>
      this.db
        .updateTable("workers")
        .set({ state: "registered", session_hash: p(0), reported_hostname: p(1), registered_at: p(2), last_heartbeat_ms: p(2) })
        .where("id", "=", p(3))
        .where("state", "in", workerStatesLeadingTo("registered"))
        .returningAll(),
    );
    return row ?? null;
  }

  /**
   * A repeated Register (its first answer was lost): a fresh session replaces the earlier one, so
   * that one stops working. Only while the worker's stream has never connected and its
   * registration deadline has not passed (waiting covers a server that died between consuming the
   * token and registering; running, a first Register that dispatched the job in its lost answer:
   * the worker stays running). The caller has checked the agent's instance key against the token.
   * `deadlineCheckMs` is the time the deadline is compared with (the caller's present time, which
   * leaves out the control plane's own absences); by default nowMs.
   */
  async reRegister(workerId: string, sessionHash: string, hostname: string, nowMs: number, deadlineCheckMs = nowMs): Promise<WorkerRow | null> {
    const row = await this.db
      .updateTable("workers")
      .set((eb) => ({
        state: eb.case().when("state", "=", "running").then(eb.val<WorkerState>("running")).else(eb.val<WorkerState>("registered")).end(),
        session_hash: sessionHash,
        reported_hostname: hostname,
        registered_at: eb.fn.coalesce("registered_at", eb.val(nowMs)),
        last_heartbeat_ms: nowMs,
      }))
      .where("id", "=", workerId)
      .where("state", "in", ["waiting", "registered", "running"])
      .where("stream_connected_at", "is", null)
      .where("registration_deadline_ms", ">", deadlineCheckMs)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /**
   * A Connect stream opens with this session: records when the worker's stream first connected
   * (from then on no repeated Register is honoured) and returns the worker, or null when the
   * session is unknown, replaced, or its attempt has ended. One statement, so a stream and a
   * repeated Register cannot both win.
   */
  async connectStream(sessionHash: string, nowMs: number): Promise<WorkerRow | null> {
    const row = await firstRow(this.db, "attempts.connectStream", [nowMs, sessionHash], (p) =>
      this.db
        .updateTable("workers")
        .set((eb) => ({ stream_connected_at: eb.fn.coalesce("stream_connected_at", eb.val(p(0))) }))
        .where("session_hash", "=", p(1))
        .where("state", "in", ["registered", "running"])
        .returningAll(),
    );
    return row ?? null;
  }

  /**
   * Dispatch: job provisioning -> running and worker registered -> running, together or not at
   * all. False when either lost a race (the job ended, the worker is being destroyed). The job has
   * started: its queue deadline is cleared, so it can no longer time out in the queue.
   */
  async dispatch(worker: WorkerRow, nowMs: number): Promise<boolean> {
    return (await this.dispatchReturning(worker, nowMs)) !== null;
  }

  /**
   * Dispatch (above), answering with the job and worker rows as it wrote them, so that the caller
   * needs no read after the write; null when either lost its race.
   */
  async dispatchReturning(worker: WorkerRow, nowMs: number): Promise<{ job: JobRow; worker: WorkerRow } | null> {
    let rows: { job: JobRow; worker: WorkerRow } | null = null;
    await this.inTransaction(async (tx) => {
      const job = await new JobQueries(tx, this.kind).transition(worker.job_id, "running", nowMs, { queue_deadline_ms: null }, worker.attempt);
      if (!job) return false;
      const moved = await new WorkerQueries(tx).transition(worker.id, "running", { started_at: nowMs });
      if (!moved) throw ROLLBACK; // the job's move is undone with the transaction
      rows = { job, worker: moved };
      return true;
    });
    return rows;
  }

  /**
   * Ends an attempt: the job moves to `to` (guarded by the state machine and the attempt number),
   * its worker to destroying, and its OTP token is revoked if it was never redeemed, in one
   * transaction; a job that ends here (a final state, not a retry) loses its secrets in it too.
   * Returns the job row, or null if the attempt had already ended. `isUncounted`: the
   * attempt was lost through no fault of the job and does not count against max_attempts.
   * `exitCode`: the command's exit code in this attempt, kept on the worker (null: it did not exit).
   */
  async end(
    worker: WorkerRow,
    to: JobState,
    nowMs: number,
    jobPatch: JobPatch,
    failureReason: string,
    isUncounted = false,
    exitCode: number | null = null,
  ): Promise<JobRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const job = await new JobQueries(tx, this.kind).transition(worker.job_id, to, nowMs, jobPatch, worker.attempt, isUncounted);
      await new WorkerQueries(tx).transition(worker.id, "destroying", { finished_at: nowMs, failure_reason: failureReason, exit_code: exitCode });
      // A worker that registered redeemed its one token first (WorkerService.register): nothing to
      // revoke, and a statement saved at the end of every attempt that ran. A row read before its
      // registration still revokes, which then changes nothing.
      if (worker.registered_at === null) await revokeUnusedTokens(tx, { workerId: worker.id }, nowMs);
      if (job && isTerminal(job.state)) await this.finishJob(tx, job, nowMs);
      return job;
    });
  }

  /**
   * Cancels a job in any state before its end, in one transaction: the job -> canceled, workers
   * that have no agent yet -> destroying, the job's unused OTP tokens revoked, its secrets deleted
   * (an agent that has them already got them at dispatch). Workers whose agent
   * is connected keep running until the agent has flushed and reported (or their stop deadline,
   * which is set here, passes). Returns the canceled job and its workers, or null if it had ended.
   */
  async cancel(jobId: string, reason: string, nowMs: number, stopDeadlineMs: number): Promise<{ job: JobRow; workers: WorkerRow[] } | null> {
    return this.db.transaction().execute(async (tx) => {
      const job = await new JobQueries(tx, this.kind).transition(jobId, "canceled", nowMs, { reason, finished_at: nowMs });
      if (!job) return null;
      await this.finishJob(tx, job, nowMs);
      return { job, workers: await releaseWorkersOfEndedJob(tx, jobId, reason, nowMs, stopDeadlineMs) };
    });
  }

  /**
   * A job that never started ends timed_out (its queue timeout passed), and its workers and
   * tokens go as a canceled job's do, in one transaction. Null when the job started or ended
   * meanwhile, or its deadline is not passed at nowMs (JobQueries.timeOutUnstarted).
   */
  async timeOutInQueue(jobId: string, reason: string, nowMs: number, stopDeadlineMs: number): Promise<{ job: JobRow; workers: WorkerRow[] } | null> {
    return this.db.transaction().execute(async (tx) => {
      const job = await new JobQueries(tx, this.kind).timeOutUnstarted(jobId, nowMs, reason);
      if (!job) return null;
      await this.finishJob(tx, job, nowMs);
      return { job, workers: await releaseWorkersOfEndedJob(tx, jobId, reason, nowMs, stopDeadlineMs) };
    });
  }

  // ---- Resources: a worker that waits for its provider (an unschedulable pod) ----------------

  /**
   * The provider says the waiting worker cannot run yet, and why (the Kubernetes scheduler's
   * message): in one transaction the worker records the reason (and since when it has waited, kept
   * from the first time), its registration deadline and its unused OTP token's expiry move to
   * `registrationDeadlineMs` (so the agent still has its whole registration time once the pod
   * starts), and its job, still provisioning this attempt, shows the reason. Null when the worker no
   * longer waits (registered, or its attempt ended).
   */
  async notePending(worker: WorkerRow, reason: string, nowMs: number, registrationDeadlineMs: number): Promise<WorkerRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable("workers")
        .set((eb) => ({
          pending_reason: reason,
          pending_since_ms: eb.fn.coalesce("pending_since_ms", eb.val(nowMs)),
          registration_deadline_ms: registrationDeadlineMs,
        }))
        .where("id", "=", worker.id)
        .where("state", "=", "waiting")
        .returningAll()
        .executeTakeFirst();
      if (!row) return null;
      // Only a token still good (its expiry is the worker's deadline: a revoked one has an earlier one).
      await tx
        .updateTable("otp_tokens")
        .set({ expires_at: registrationDeadlineMs })
        .where("worker_id", "=", worker.id)
        .where("consumed_at", "is", null)
        .where("expires_at", "=", worker.registration_deadline_ms)
        .execute();
      await tx
        .updateTable("jobs")
        .set({ reason: pendingJobReason(reason) })
        .where("id", "=", worker.job_id)
        .where("state", "=", "provisioning")
        .where("attempts", "=", worker.attempt)
        .where("reason", "!=", pendingJobReason(reason))
        .execute();
      return row;
    });
  }

  /**
   * The provider no longer says the worker waits (the pod was scheduled): the worker forgets the
   * reason and the job's reason, if still that one, is cleared. The registration deadline keeps the
   * time notePending gave it. Null when there was nothing to clear.
   */
  async clearPending(worker: WorkerRow): Promise<WorkerRow | null> {
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable("workers")
        .set({ pending_reason: "", pending_since_ms: null })
        .where("id", "=", worker.id)
        .where("pending_since_ms", "is not", null)
        .returningAll()
        .executeTakeFirst();
      if (!row) return null;
      await tx
        .updateTable("jobs")
        .set({ reason: "" })
        .where("id", "=", worker.job_id)
        .where("state", "=", "provisioning")
        .where("attempts", "=", worker.attempt)
        .where("reason", "=", pendingJobReason(worker.pending_reason))
        .execute();
      return row;
    });
  }

  /** Runs fn in a transaction; throwing ROLLBACK undoes it and yields false. */
  private async inTransaction(fn: (tx: Kysely<Database>) => Promise<boolean>): Promise<boolean> {
    try {
      return await this.db.transaction().execute(fn);
    } catch (err) {
      if (err === ROLLBACK) return false;
      throw err;
    }
  }
}

/** The reason a provisioning job shows while its worker waits for its provider. */
export function pendingJobReason(reason: string): string {
  return `waiting: ${reason}`;
}

/** Thrown inside a transaction to undo it when a later step of a multi-row change lost its race. */
const ROLLBACK = Symbol("rollback");

/**
 * The workers of a job that has just ended before its command did (canceled, timed out in the
 * queue): those without an agent yet -> destroying, connected ones get a stop deadline; the job's
 * unused OTP tokens are revoked (its secrets went in finishJob). Returns the job's workers as they are now.
 */
async function releaseWorkersOfEndedJob(tx: Kysely<Database>, jobId: string, reason: string, nowMs: number, stopDeadlineMs: number): Promise<WorkerRow[]> {
  const workers = new WorkerQueries(tx);
  for (const worker of await workers.listOfJob(jobId)) {
    if (worker.state === "provisioning" || worker.state === "waiting") {
      await workers.transition(worker.id, "destroying", { finished_at: nowMs, failure_reason: reason });
    } else if (worker.state === "registered" || worker.state === "running") {
      await workers.setFields(worker.id, { stop_deadline_ms: stopDeadlineMs });
    }
  }
  await revokeUnusedTokens(tx, { jobId }, nowMs);
  return workers.listOfJob(jobId);
}

/** An attempt that ended (or a job canceled) revokes its OTP tokens that were never redeemed. */
async function revokeUnusedTokens(tx: Kysely<Database>, of: { workerId: string } | { jobId: string }, nowMs: number): Promise<void> {
  if ("workerId" in of) {
    // The end of every attempt: compiled once (store/compiled.ts).
    await runCompiled(tx, "attempts.revokeUnusedTokens:worker", [nowMs, of.workerId], (p) =>
      tx.updateTable("otp_tokens").set({ expires_at: p(0) }).where("worker_id", "=", p(1)).where("consumed_at", "is", null).where("expires_at", ">", p(0)),
    );
    return;
  }
  await tx
    .updateTable("otp_tokens")
    .set({ expires_at: nowMs })
    .where("job_id", "=", of.jobId)
    .where("consumed_at", "is", null)
    .where("expires_at", ">", nowMs)
    .execute();
}

async function insertWorkerRows(tx: Kysely<Database>, worker: NewWorker, token: NewToken, nowMs: number): Promise<WorkerRow> {
  const row = await tx.insertInto("workers").values(workerValues(worker, nowMs)).returningAll().executeTakeFirstOrThrow();
  await tx.insertInto("otp_tokens").values(tokenValues(worker, token, nowMs)).execute();
  return row;
}

/** The worker and token rows of a batched claim: one insert per table, rows in the order given. */
async function insertWorkerBatch(tx: Kysely<Database>, batch: { worker: NewWorker; token: NewToken }[], nowMs: number): Promise<WorkerRow[]> {
  const rows = await tx.insertInto("workers").values(batch.map((b) => workerValues(b.worker, nowMs))).returningAll().execute();
  await tx.insertInto("otp_tokens").values(batch.map((b) => tokenValues(b.worker, b.token, nowMs))).execute();
  const byId = new Map(rows.map((row) => [row.id, row]));
  return batch.map((b) => byId.get(b.worker.id)!);
}

function workerValues(worker: NewWorker, nowMs: number) {
  return {
    id: worker.id,
    name: worker.name,
    job_id: worker.jobId,
    attempt: worker.attempt,
    provider: worker.provider,
    provider_resource_id: null,
    resource_type: null,
    state: "provisioning" as const,
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
    exit_code: null,
    node_id: worker.nodeId ?? null,
    start_owner: worker.startOwner ?? null,
    start_deadline_ms: worker.startDeadlineMs ?? null,
  };
}

function tokenValues(worker: NewWorker, token: NewToken, nowMs: number) {
  return {
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
  };
}
