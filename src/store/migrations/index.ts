/**
 * In-code migrations, one file per step (`NNNN_title.ts`), applied in name order by Kysely's
 * Migrator (bundle-friendly: no filesystem scan). DDL differences between SQLite and PostgreSQL go
 * through `kind`; queries never differ. A step, once released, is never edited: add a new one.
 */
import { type Kysely, type Migration, type MigrationProvider, type MigrationResultSet, Migrator } from "kysely";
import type { DatabaseKind } from "../database.js";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_job_resources.js";
import * as m0003 from "./0003_workers_by_resource.js";
import * as m0004 from "./0004_log_data_bytes.js";
import * as m0005 from "./0005_worker_log_progress.js";
import * as m0006 from "./0006_register_retry.js";
import * as m0007 from "./0007_query_indexes.js";
import * as m0008 from "./0008_removed_jobs.js";
import * as m0009 from "./0009_meta.js";
import * as m0010 from "./0010_uncounted_attempts.js";
import * as m0011 from "./0011_api_keys.js";
import * as m0012 from "./0012_job_submitted_by.js";
import * as m0013 from "./0013_job_queue.js";
import * as m0014 from "./0014_job_labels.js";
import * as m0015 from "./0015_retry_on_exit_codes.js";
import * as m0016 from "./0016_job_rerun_of.js";
import * as m0017 from "./0017_job_secrets.js";
import * as m0018 from "./0018_job_secret_names.js";
import * as m0019 from "./0019_job_placement.js";
import * as m0020 from "./0020_worker_waiting.js";
import * as m0021 from "./0021_postgres_binary_order.js";
import * as m0022 from "./0022_leases_and_replicas.js";
import * as m0023 from "./0023_worker_start_and_node.js";
import * as m0024 from "./0024_job_trace.js";
import * as m0025 from "./0025_webhook_deliveries.js";
import * as m0026 from "./0026_schedules.js";
import * as m0027 from "./0027_workers_provider_state.js";
import * as m0028 from "./0028_jobs_provider_created.js";
import * as m0029 from "./0029_replica_process_key.js";
import * as m0030 from "./0030_idempotency_key_scope.js";
import * as m0031 from "./0031_job_secret_names_backfill.js";
import * as m0032 from "./0032_partial_queue_indexes.js";

type Step = { up(db: Kysely<any>, kind: DatabaseKind): Promise<void> };

const STEPS: Record<string, Step> = {
  "0001_initial": m0001,
  "0002_job_resources": m0002,
  "0003_workers_by_resource": m0003,
  "0004_log_data_bytes": m0004,
  "0005_worker_log_progress": m0005,
  "0006_register_retry": m0006,
  "0007_query_indexes": m0007,
  "0008_removed_jobs": m0008,
  "0009_meta": m0009,
  "0010_uncounted_attempts": m0010,
  "0011_api_keys": m0011,
  "0012_job_submitted_by": m0012,
  "0013_job_queue": m0013,
  "0014_job_labels": m0014,
  "0015_retry_on_exit_codes": m0015,
  "0016_job_rerun_of": m0016,
  "0017_job_secrets": m0017,
  "0018_job_secret_names": m0018,
  "0019_job_placement": m0019,
  "0020_worker_waiting": m0020,
  "0021_postgres_binary_order": m0021,
  "0022_leases_and_replicas": m0022,
  "0023_worker_start_and_node": m0023,
  "0024_job_trace": m0024,
  "0025_webhook_deliveries": m0025,
  "0026_schedules": m0026,
  "0027_workers_provider_state": m0027,
  "0028_jobs_provider_created": m0028,
  "0029_replica_process_key": m0029,
  "0030_idempotency_key_scope": m0030,
  "0031_job_secret_names_backfill": m0031,
  "0032_partial_queue_indexes": m0032,
};

/** The first step: applying it means the database was created by this run. */
const FIRST_STEP = "0001_initial";

function migrations(kind: DatabaseKind): Record<string, Migration> {
  return Object.fromEntries(Object.entries(STEPS).map(([name, step]) => [name, { up: (db: Kysely<any>) => step.up(db, kind) }]));
}

function migrator(db: Kysely<any>, kind: DatabaseKind): Migrator {
  const provider: MigrationProvider = { getMigrations: async () => migrations(kind) };
  return new Migrator({ db, provider });
}

function check({ error, results }: MigrationResultSet): NonNullable<MigrationResultSet["results"]> {
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    const cause = error instanceof Error ? error : new Error(String(error));
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${cause.message}`, { cause });
  }
  return results ?? [];
}

/** Applies every pending step. True when the database was new (its first step ran now). */
export async function migrateToLatest(db: Kysely<any>, kind: DatabaseKind): Promise<{ isNew: boolean }> {
  const results = check(await migrator(db, kind).migrateToLatest());
  return { isNew: results.some((r) => r.migrationName === FIRST_STEP && r.status === "Success") };
}

/** Applies the steps up to and including `name` only: tests build a database as an older release left it. */
export async function migrateTo(db: Kysely<any>, kind: DatabaseKind, name: string): Promise<{ isNew: boolean }> {
  if (!(name in STEPS)) throw new Error(`no migration named ${name}`);
  const results = check(await migrator(db, kind).migrateTo(name));
  return { isNew: results.some((r) => r.migrationName === FIRST_STEP && r.status === "Success") };
}
