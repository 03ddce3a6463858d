/**
 * PostgreSQL: text that is ordered or compared by range (ids in every (created_at, id) page and
 * tie-break, key names, label keys and values, secret names) compares byte by byte, as on SQLite
 * (COLLATE "C"). A database created with a linguistic locale (en_US.UTF-8, ICU) would otherwise
 * order "B" after "a" and ignore or weigh punctuation, so pages could skip or repeat rows and
 * the two databases would answer in different orders. The columns that reference a job or a
 * worker by foreign key change with it, so both sides of each key compare alike. Indexes on these
 * columns are rebuilt by PostgreSQL. SQLite: nothing to do (its text order is already binary).
 */
import { type Kysely, sql } from "kysely";
import type { DatabaseKind } from "../database.js";

const COLUMNS: Record<string, string[]> = {
  jobs: ["id"],
  workers: ["id", "job_id"],
  otp_tokens: ["id", "job_id", "worker_id"],
  job_logs: ["job_id"],
  job_labels: ["job_id", "key", "value"],
  job_secrets: ["job_id", "name"],
  api_keys: ["name"],
  removed_jobs: ["id"],
};

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  if (kind !== "postgres") return;
  for (const [table, columns] of Object.entries(COLUMNS)) {
    const changes = columns.map((c) => `alter column "${c}" type text collate "C"`).join(", ");
    await sql.raw(`alter table "${table}" ${changes}`).execute(db);
  }
}
