/**
 * In-code migrations, one file per step (`NNNN_title.ts`), applied in name order by Kysely's
 * Migrator (bundle-friendly: no filesystem scan). DDL differences between SQLite and PostgreSQL go
 * through `kind`; queries never differ. A step, once released, is never edited: add a new one.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator } from "kysely";
import type { DatabaseKind } from "../database.js";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_job_resources.js";
import * as m0003 from "./0003_workers_by_resource.js";
import * as m0004 from "./0004_log_data_bytes.js";
import * as m0005 from "./0005_worker_log_progress.js";
import * as m0006 from "./0006_register_retry.js";
import * as m0020 from "./0020_uncounted_attempts.js";

type Step = { up(db: Kysely<any>, kind: DatabaseKind): Promise<void> };

const STEPS: Record<string, Step> = {
  "0001_initial": m0001,
  "0002_job_resources": m0002,
  "0003_workers_by_resource": m0003,
  "0004_log_data_bytes": m0004,
  "0005_worker_log_progress": m0005,
  "0006_register_retry": m0006,
  "0020_uncounted_attempts": m0020,
};

function migrations(kind: DatabaseKind): Record<string, Migration> {
  return Object.fromEntries(Object.entries(STEPS).map(([name, step]) => [name, { up: (db: Kysely<any>) => step.up(db, kind) }]));
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
}
