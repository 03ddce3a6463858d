/**
 * In-code migrations (bundle-friendly, no filesystem scan). DDL differences between SQLite and
 * PostgreSQL go through `kind`; queries never differ.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from "kysely";
import type { DatabaseKind } from "./database.js";

function migrations(kind: DatabaseKind): Record<string, Migration> {
  const bigint = kind === "postgres" ? "bigint" : "integer";
  return {
    "0001_initial": {
      async up(db: Kysely<any>) {
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
      },
    },
    "0002_job_resources": {
      async up(db: Kysely<any>) {
        await db.schema.alterTable("jobs").addColumn("cpu_millis", "integer", (c) => c.notNull().defaultTo(0)).execute();
        await db.schema.alterTable("jobs").addColumn("memory_mb", "integer", (c) => c.notNull().defaultTo(0)).execute();
      },
    },
    "0003_workers_by_resource": {
      async up(db: Kysely<any>) {
        await db.schema.createIndex("workers_resource").on("workers").columns(["provider", "provider_resource_id"]).execute();
      },
    },
  };
}

export async function migrateToLatest(db: Kysely<any>, kind: DatabaseKind): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations(kind) };
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    const cause = error instanceof Error ? error : new Error(String(error));
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${cause.message}`, { cause });
  }
  void sql;
}
