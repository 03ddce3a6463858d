/**
 * A Register cut off by a server failure may be repeated by the same agent process: the consumed
 * token keeps the hash of the agent's instance key, and the worker records when its stream first
 * connected (no repeat is honoured after that). Workers already registered before this step count
 * as connected: their agents sent no instance key, so they could never repeat anyway.
 */
import { type Kysely, sql } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  await db.schema.alterTable("otp_tokens").addColumn("instance_key_hash", "text").execute();
  await db.schema.alterTable("workers").addColumn("stream_connected_at", bigint).execute();
  await sql`update workers set stream_connected_at = coalesce(started_at, registered_at) where state in ('registered', 'running')`.execute(db);
}
