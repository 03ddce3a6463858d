/**
 * Webhook deliveries of a job's end (migration 0025). A job's deliveries are inserted by the
 * transaction that makes it final (insertDeliveries, called from store/attempts.ts), one per URL:
 * the job's own (jobs.notify) and the server's (HODEI_WEBHOOK_URL). The dispatcher
 * (scheduler/webhooks.ts) takes due ones, sends them and records the answer; every change is one
 * statement guarded by the state and the attempt count, so a late answer to a request whose
 * delivery was taken again (its lease passed: the sender's process died) changes nothing.
 *
 * At least once: a delivery is taken by moving its next_attempt_at past the request's time limit
 * (a lease) and counting the attempt, then sent, then marked. A process that dies between the send
 * and the mark leaves it pending; once the lease passes it is sent again.
 */
import type { Kysely } from "kysely";
import type { Database, JobRow, WebhookDeliveryRow } from "./schema.js";

export interface DeliveryOutcome {
  /** HTTP status of the answer; null when there was none. */
  status: number | null;
  /** Why the request failed, in words ("" when it was answered 2xx). */
  error: string;
}

/**
 * The deliveries of a job that has just become final, in the caller's transaction: one per
 * distinct URL of the job's notify list and of `serverUrls`, due at nowMs. `newId` makes their ids.
 */
export async function insertDeliveries(tx: Kysely<Database>, job: JobRow, serverUrls: readonly string[], nowMs: number, newId: () => string): Promise<void> {
  const urls = [...new Set([...(JSON.parse(job.notify) as string[]), ...serverUrls])];
  if (urls.length === 0) return;
  await tx
    .insertInto("webhook_deliveries")
    .values(
      urls.map((url) => ({
        id: newId(),
        job_id: job.id,
        url,
        state: "pending" as const,
        attempts: 0,
        next_attempt_at: nowMs,
        last_status: null,
        last_error: "",
        created_at: nowMs,
        delivered_at: null,
      })),
    )
    .execute();
}

export class WebhookQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Takes up to `limit` pending deliveries due at nowMs, oldest due first: each counts one more
   * attempt and is not due again before `leaseUntilMs` (the request's time limit and a margin), so
   * no pass takes it again while its request is in flight. Returns them as taken.
   *
   * A read first, then a guarded update of what it found: the step runs on every pass and there is
   * usually nothing due, and a read takes no write lock (an UPDATE would, on SQLite, even when it
   * changes nothing). The guard (still pending and due) makes a delivery taken by another process
   * in between (a replica that still believed it led) a loser of the race, left out.
   */
  async takeDue(nowMs: number, leaseUntilMs: number, limit: number): Promise<WebhookDeliveryRow[]> {
    if (limit <= 0) return [];
    const due = await this.db
      .selectFrom("webhook_deliveries")
      .select("id")
      .where("state", "=", "pending")
      .where("next_attempt_at", "<=", nowMs)
      .orderBy("next_attempt_at")
      .orderBy("id")
      .limit(limit)
      .execute();
    if (due.length === 0) return [];
    const taken = await this.db
      .updateTable("webhook_deliveries")
      .set((eb) => ({ attempts: eb("attempts", "+", 1), next_attempt_at: leaseUntilMs }))
      .where("id", "in", due.map((row) => row.id))
      .where("state", "=", "pending")
      .where("next_attempt_at", "<=", nowMs)
      .returningAll()
      .execute();
    return taken.sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
  }

  /** Request number `attempts` was answered 2xx: delivered. Null when the delivery was taken again since (or has ended). */
  async markDelivered(id: string, attempts: number, status: number, nowMs: number): Promise<WebhookDeliveryRow | null> {
    const row = await this.db
      .updateTable("webhook_deliveries")
      .set({ state: "delivered", last_status: status, last_error: "", delivered_at: nowMs })
      .where("id", "=", id)
      .where("state", "=", "pending")
      .where("attempts", "=", attempts)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /**
   * Request number `attempts` failed: the delivery is due again at `nextAttemptAtMs`, or, when that
   * is null, given up on (failed). Null when the delivery was taken again since (or has ended).
   */
  async markFailedAttempt(id: string, attempts: number, outcome: DeliveryOutcome, nextAttemptAtMs: number | null): Promise<WebhookDeliveryRow | null> {
    const row = await this.db
      .updateTable("webhook_deliveries")
      .set({
        state: nextAttemptAtMs === null ? "failed" : "pending",
        last_status: outcome.status,
        last_error: outcome.error.slice(0, 1000),
        ...(nextAttemptAtMs === null ? {} : { next_attempt_at: nextAttemptAtMs }),
      })
      .where("id", "=", id)
      .where("state", "=", "pending")
      .where("attempts", "=", attempts)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** A job's deliveries, oldest first (GetJob). */
  async listOfJob(jobId: string): Promise<WebhookDeliveryRow[]> {
    return this.db.selectFrom("webhook_deliveries").selectAll().where("job_id", "=", jobId).orderBy("created_at").orderBy("id").execute();
  }
}
