/** Workers looked up by (provider, provider_resource_id) when a provider reports a change. */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("workers_resource").on("workers").columns(["provider", "provider_resource_id"]).execute();
}
