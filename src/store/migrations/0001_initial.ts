/** The first schema: jobs, workers, OTP tokens and job logs. */
import type { Kysely } from "kysely";
import type { DatabaseKind } from "../database.js";

export async function up(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const bigint = kind === "postgres" ? "bigint" : "integer";

  await db.schema
    .createTable("jobs")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("command", "text", (c) => c.notNull())
    .addColumn("script", "text", (c) => c.notNull())
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("timeout_seconds", "integer", (c) => c.notNull())
    .addColumn("labels", "text", (c) => c.notNull())
    .addColumn("image", "text", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.unique())
    .addColumn("max_attempts", "integer", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull())
    .addColumn("exit_code", "integer")
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("logs_truncated", "integer", (c) => c.notNull())
    .addColumn("logs_incomplete", "integer", (c) => c.notNull())
    .addColumn("not_before_ms", bigint, (c) => c.notNull())
    .addColumn("created_at", bigint, (c) => c.notNull())
    .addColumn("updated_at", bigint, (c) => c.notNull())
    .addColumn("finished_at", bigint)
    .execute();
  await db.schema.createIndex("jobs_state_created").on("jobs").columns(["state", "created_at"]).execute();
  await db.schema.createIndex("jobs_created").on("jobs").columns(["created_at", "id"]).execute();

  await db.schema
    .createTable("workers")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("attempt", "integer", (c) => c.notNull())
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("provider_resource_id", "text")
    .addColumn("resource_type", "text")
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("session_hash", "text", (c) => c.unique())
    .addColumn("reported_hostname", "text")
    .addColumn("created_at", bigint, (c) => c.notNull())
    .addColumn("provisioned_at", bigint)
    .addColumn("registered_at", bigint)
    .addColumn("started_at", bigint)
    .addColumn("finished_at", bigint)
    .addColumn("destroyed_at", bigint)
    .addColumn("registration_deadline_ms", bigint, (c) => c.notNull())
    .addColumn("last_heartbeat_ms", bigint)
    .addColumn("stop_deadline_ms", bigint)
    .addColumn("failure_reason", "text", (c) => c.notNull())
    .addColumn("destroy_attempts", "integer", (c) => c.notNull())
    .addColumn("last_error", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("workers_state").on("workers").columns(["state"]).execute();
  await db.schema.createIndex("workers_job").on("workers").columns(["job_id", "attempt"]).unique().execute();

  await db.schema
    .createTable("otp_tokens")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("token_hash", "text", (c) => c.notNull().unique())
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("attempt", "integer", (c) => c.notNull())
    .addColumn("worker_id", "text", (c) => c.notNull().references("workers.id"))
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("provider_resource_id", "text")
    .addColumn("resource_type", "text")
    .addColumn("created_at", bigint, (c) => c.notNull())
    .addColumn("expires_at", bigint, (c) => c.notNull())
    .addColumn("consumed_at", bigint)
    .execute();
  await db.schema.createIndex("otp_tokens_created").on("otp_tokens").columns(["created_at"]).execute();

  await db.schema
    .createTable("job_logs")
    .addColumn("id", kind === "postgres" ? "bigserial" : "integer", (c) =>
      kind === "postgres" ? c.primaryKey() : c.primaryKey().autoIncrement(),
    )
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id"))
    .addColumn("attempt", "integer", (c) => c.notNull())
    .addColumn("seq", bigint, (c) => c.notNull())
    .addColumn("stream", "text", (c) => c.notNull())
    .addColumn("data", "text", (c) => c.notNull())
    .addColumn("time_ms", bigint, (c) => c.notNull())
    .execute();
  await db.schema.createIndex("job_logs_seq").on("job_logs").columns(["job_id", "attempt", "seq"]).unique().execute();
  await db.schema.createIndex("job_logs_cursor").on("job_logs").columns(["job_id", "id"]).execute();
}
