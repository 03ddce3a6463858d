/**
 * ListJobs by provider (the dashboard's and `hodei jobs --provider`'s filter): the newest jobs of one
 * provider as one range of (provider, created_at, id), read in order. Without it SQLite walked
 * jobs_created from the newest job and filtered, so a provider with few jobs among many of another
 * read the whole history (25 ms for 10 jobs of one provider among 100,000, in-memory SQLite). Only inserts write it: neither column changes
 * after a job is stored.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("jobs_provider_created").on("jobs").columns(["provider", "created_at", "id"]).execute();
}
