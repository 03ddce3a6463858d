/**
 * Log progress per attempt on its worker row: the highest contiguous seq received, the bytes
 * stored, and whether the control plane cut the log at the limit. Updated in the same transaction
 * as each insert and guarded by the seq expected, so checking the numbering and storing are one
 * step. Live workers start from what is already stored (their logs were numbered without gaps).
 */
import { type Kysely, sql } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema.alterTable("workers").addColumn("log_seq", bigint, (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("workers").addColumn("log_bytes", bigint, (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("workers").addColumn("log_truncated", "integer", (c) => c.notNull().defaultTo(0)).execute();
  const size = kind === "postgres" ? sql`octet_length(l.data)` : sql`length(l.data)`;
  await sql`
    update workers set
      log_seq = coalesce((select max(l.seq) from job_logs l where l.job_id = workers.job_id and l.attempt = workers.attempt), 0),
      log_bytes = coalesce((select sum(${size}) from job_logs l where l.job_id = workers.job_id and l.attempt = workers.attempt), 0)
    where state in ('waiting', 'registered', 'running')
  `.execute(db);
}
