/**
 * Job secrets, encrypted (core/secret-box.ts: AES-256-GCM, a random nonce per value, the job id and
 * the name as associated data): never a plain value. A job's rows live only while the job may still
 * run: the operations that end a job delete them in the same transaction (store/attempts.ts), and
 * retention removes any left with their job.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bytes = kind === "postgres" ? "bytea" : "blob";
  await db.schema
    .createTable("job_secrets")
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("nonce", bytes, (c) => c.notNull())
    // The encrypted value with its GCM tag appended.
    .addColumn("ciphertext", bytes, (c) => c.notNull())
    // Fingerprint of the key that sealed it (core/secret-box.ts keyIdOf), never the key.
    .addColumn("key_id", "text", (c) => c.notNull())
    // Also the index every query of this table reads through: all of them are per job.
    .addPrimaryKeyConstraint("job_secrets_pk", ["job_id", "name"])
    .execute();
}
