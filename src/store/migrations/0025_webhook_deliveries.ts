/**
 * Webhooks of a job's end. jobs.notify: the job's own webhook URLs (a JSON array of strings, as
 * validated at submit). webhook_deliveries: one row per URL told of a job's end, written in the
 * transaction that makes the job final (store/attempts.ts), so a job never ends without its
 * deliveries and a crash never loses one (at least once). The dispatcher (scheduler/webhooks.ts)
 * reads the due pending rows through webhook_deliveries_due; retention removes a job's rows with
 * it, through webhook_deliveries_job.
 */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const ms = kind === "postgres" ? "bigint" : "integer";
  await db.schema.alterTable("jobs").addColumn("notify", "text", (c) => c.notNull().defaultTo("[]")).execute();
  await db.schema
    .createTable("webhook_deliveries")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("url", "text", (c) => c.notNull())
    // pending | delivered | failed
    .addColumn("state", "text", (c) => c.notNull())
    // Requests made (a request in flight counts).
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    // When a pending delivery is due; while a request is in flight, when it may be taken again.
    .addColumn("next_attempt_at", ms, (c) => c.notNull())
    .addColumn("last_status", "integer")
    .addColumn("last_error", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("created_at", ms, (c) => c.notNull())
    .addColumn("delivered_at", ms)
    .execute();
  await db.schema.createIndex("webhook_deliveries_due").on("webhook_deliveries").columns(["state", "next_attempt_at", "id"]).execute();
  await db.schema.createIndex("webhook_deliveries_job").on("webhook_deliveries").columns(["job_id", "created_at"]).execute();
}
