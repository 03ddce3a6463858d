/**
 * Log data is bytes: a job's output is not necessarily UTF-8 and is stored exactly as written.
 * PostgreSQL: job_logs.data becomes bytea (the text so far is its UTF-8 encoding). SQLite keeps each
 * value's own storage class whatever the declared type, so the column stays as declared and the
 * text rows written before are turned into blobs: every row then reads back as bytes.
 */
import { type Kysely, sql } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  if (kind === "postgres") {
    await sql`alter table job_logs alter column data type bytea using convert_to(data, 'UTF8')`.execute(db);
  } else {
    await sql`update job_logs set data = cast(data as blob) where typeof(data) = 'text'`.execute(db);
  }
}
