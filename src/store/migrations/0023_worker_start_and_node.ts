/**
 * Per worker: the node (machine) of the replica that started it (node_id: a local worker's pid and
 * /proc mean something on that host only), and whether its provider start() is still in flight
 * (start_owner: the replica id running it; start_deadline_ms: after it, a start still recorded as
 * in flight is not trusted, since its replica may have died mid-start). Both start columns are
 * cleared when the start returns. Rows from before this step have neither: no start in flight,
 * node unknown (treated as the node of whichever replica looks at them, as one machine ran them).
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  await db.schema.alterTable("workers").addColumn("node_id", "text").execute();
  await db.schema.alterTable("workers").addColumn("start_owner", "text").execute();
  await db.schema.alterTable("workers").addColumn("start_deadline_ms", kind === "postgres" ? "bigint" : "integer").execute();
}
