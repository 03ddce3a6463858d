/**
 * API keys: who may call the client API, and what for (core/scopes.ts). Only a key's SHA-256 hash
 * is stored. The name is the key's identity for ever: a revoked key keeps its row, so that a name
 * is never reused and a job's submitted_by keeps naming one key.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema
    .createTable("api_keys")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("key_hash", "text", (c) => c.notNull().unique())
    // JSON array of scope names.
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("created_at", bigint, (c) => c.notNull())
    .addColumn("last_used_at", bigint)
    .addColumn("revoked_at", bigint)
    .execute();
  // `hodei keys ls` lists oldest first.
  await db.schema.createIndex("api_keys_created").on("api_keys").columns(["created_at", "name"]).execute();
}
