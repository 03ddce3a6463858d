/**
 * Live workers counted by provider: the claim's capacity check (attempts.claimBatch) and the
 * provision step count a provider's workers in live states on every pass and every claim. Without
 * this index SQLite answered `provider = ? and state in (...)` through workers_resource (provider,
 * provider_resource_id), reading every destroyed worker of the provider: with 200,000 finished jobs
 * that made each claim take a few hundred milliseconds (bench history: submit to succeeded 6x slower).
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("workers_provider_state").on("workers").columns(["provider", "state"]).execute();
}
