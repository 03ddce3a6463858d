/**
 * Idempotency keys belong to the API key that submits (store/jobs.ts, storedIdempotencyKey): a
 * stored key becomes "<submitted_by>:<key>" ("" for jobs submitted without a key, auth off), so a
 * retry after the upgrade still finds its job. Key names never hold ":" (server/key-service.ts), so
 * two namespaces never meet.
 */
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db
    .updateTable("jobs")
    .set({ idempotency_key: sql`coalesce(submitted_by, '') || ':' || idempotency_key` })
    .where("idempotency_key", "is not", null)
    .execute();
}
