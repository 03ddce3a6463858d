/**
 * Queries on the job_logs table: chunks numbered 1, 2, 3, ... per attempt, stored before they are
 * acknowledged; a chunk already stored (a resend after a reconnect) is ignored.
 */
import type { Kysely } from "kysely";
import type { Database, LogRow } from "./schema.js";

export interface LogChunkInput {
  seq: number;
  stream: string;
  data: string;
  timeMs: number;
}

export class LogQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores chunks; a chunk already stored (a resend after reconnect) is ignored. */
  async append(jobId: string, attempt: number, chunks: LogChunkInput[]): Promise<void> {
    if (chunks.length === 0) return;
    await this.db
      .insertInto("job_logs")
      .values(chunks.map((c) => ({ job_id: jobId, attempt, seq: c.seq, stream: c.stream, data: c.data, time_ms: c.timeMs })))
      .onConflict((oc) => oc.columns(["job_id", "attempt", "seq"]).doNothing())
      .execute();
  }

  /** How many chunks of an attempt are stored with seq <= upTo (complete when it equals upTo). */
  async count(jobId: string, attempt: number, upTo: number): Promise<number> {
    const row = await this.db
      .selectFrom("job_logs")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("job_id", "=", jobId)
      .where("attempt", "=", attempt)
      .where("seq", "<=", upTo)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async maxSeq(jobId: string, attempt: number): Promise<number> {
    const row = await this.db
      .selectFrom("job_logs")
      .select((eb) => eb.fn.max("seq").as("m"))
      .where("job_id", "=", jobId)
      .where("attempt", "=", attempt)
      .executeTakeFirst();
    return Number(row?.m ?? 0);
  }

  async read(jobId: string, afterCursor: number, limit: number): Promise<LogRow[]> {
    return this.db
      .selectFrom("job_logs")
      .selectAll()
      .where("job_id", "=", jobId)
      .where("id", ">", afterCursor)
      .orderBy("id")
      .limit(limit)
      .execute();
  }
}
