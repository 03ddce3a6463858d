/**
 * The queue's two indexes hold only the rows they are read for:
 *  - jobs_queue (state, priority desc, created_at, id) keeps queued jobs only (`state = 'queued'`):
 *    the claim, the queue gauges and the waiting reason read nothing else;
 *  - jobs_queue_deadline (state, queue_deadline_ms, id) keeps jobs with a queue deadline only
 *    (`queue_deadline_ms is not null`): dispatch clears it, and most jobs never have one.
 * Before, both held every job ever stored, and each state change of every job rewrote an entry in
 * each: a job's life wrote 58 WAL frames, 6 of them for these two (measured by mapping the server's
 * WAL writes to their b-trees during 20 sequential `hodei run -- true`; docs/storage.md).
 *
 * SQLite uses a partial index only where the statement implies its WHERE: the queries that read
 * jobs_queue name `'queued'` as a literal (store/jobs.ts, store/attempts.ts); a bound `state = ?`
 * would also match, but SQLite then prepares the statement again on every binding.
 * `queue_deadline_ms <= ?` implies `is not null` as it stands.
 */
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("jobs_queue").execute();
  await db.schema.createIndex("jobs_queue").on("jobs").columns(["state", "priority desc", "created_at", "id"]).where(sql.ref("state"), "=", sql.lit("queued")).execute();
  await db.schema.dropIndex("jobs_queue_deadline").execute();
  await db.schema.createIndex("jobs_queue_deadline").on("jobs").columns(["state", "queue_deadline_ms", "id"]).where(sql.ref("queue_deadline_ms"), "is not", null).execute();
}
