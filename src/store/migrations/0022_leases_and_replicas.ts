/**
 * Several control planes on one database (replicas).
 *
 * leases: named leases held by one replica at a time. The row `leader` is the leader lease: the
 * replica that holds it (holder, its replica id) until expires_at_ms runs the reconcile steps that
 * must run once (deadlines, destroy, reap, retention). epoch counts the times it changed hands (a
 * fencing counter: a replica that reads another epoch than the one it acquired has lost it). The
 * row exists from the start, so acquiring and renewing are one guarded UPDATE each, never an insert
 * race.
 *
 * replicas: one presence row per running replica (its random id, the node it runs on, when it
 * started and last renewed). Renewed with the lease; a node whose replicas all stopped renewing
 * has lost its local workers (scheduler/nodes.ts). Also the list of replicas `hodei providers`
 * and doctor can show.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const ms = kind === "postgres" ? "bigint" : "integer";
  await db.schema
    .createTable("leases")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("holder", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("epoch", ms, (c) => c.notNull().defaultTo(0))
    .addColumn("expires_at_ms", ms, (c) => c.notNull().defaultTo(0))
    .execute();
  await db.insertInto("leases").values({ name: "leader", holder: "", epoch: 0, expires_at_ms: 0 }).execute();
  await db.schema
    .createTable("replicas")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("node_id", "text", (c) => c.notNull())
    .addColumn("started_at_ms", ms, (c) => c.notNull())
    .addColumn("renewed_at_ms", ms, (c) => c.notNull())
    .execute();
}
