/**
 * Queries on job_secrets: a job's secrets, encrypted (core/secret-box.ts seals and opens them; the
 * store never sees a plain value or the key).
 *
 * Invariants:
 * - a job and its secrets are inserted in one transaction: no job ever runs without the secrets
 *   it was submitted with;
 * - a job's rows are deleted in the transaction that ends the job (deleteSecretsOfJob, called by
 *   store/attempts.ts end and cancel) and by retention with the job: they exist only while the job
 *   may still run;
 * - every statement is per job, on the table's primary key (job_id, name).
 */
import type { Kysely } from "kysely";
import type { JobSpec } from "../core/job-spec.js";
import type { SealedSecret } from "../core/secret-box.js";
import { runCompiled } from "./compiled.js";
import type { DatabaseKind } from "./database.js";
import { insertJobRows } from "./jobs.js";
import type { Database, JobRow } from "./schema.js";

export class SecretQueries {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: DatabaseKind,
  ) {}

  /**
   * Stores a validated spec as a queued job (JobQueries.insert: the idempotency key's first job
   * when the key was used) and, for a new job, its sealed secrets, in one transaction. `sealed`
   * must be sealed for job `id`.
   */
  async insertJob(id: string, spec: JobSpec, nowMs: number, submittedBy: string | null, sealed: SealedSecret[]): Promise<JobRow> {
    // The job's row alone (no labels, no secrets) is one INSERT, atomic by itself: no transaction's
    // BEGIN and COMMIT around it, two statements (round trips on PostgreSQL) less per such submit.
    // A used idempotency key's read of the first job needs none either: that row is committed.
    if (sealed.length === 0 && Object.keys(spec.labels).length === 0) return insertJobRows(this.db, this.kind, id, spec, nowMs, submittedBy, null);
    return this.db.transaction().execute(async (tx) => {
      const row = await insertJobRows(tx, this.kind, id, spec, nowMs, submittedBy, null);
      if (row.id === id && sealed.length > 0) {
        await tx
          .insertInto("job_secrets")
          .values(sealed.map((s) => ({ job_id: id, name: s.name, nonce: s.nonce, ciphertext: s.ciphertext, key_id: s.keyId })))
          .execute();
      }
      return row;
    });
  }

  /** The job's sealed secrets, by name; empty once the job has ended. */
  async listOfJob(jobId: string): Promise<SealedSecret[]> {
    const rows = await this.db.selectFrom("job_secrets").selectAll().where("job_id", "=", jobId).orderBy("name").execute();
    return rows.map((r) => ({ name: r.name, nonce: Buffer.from(r.nonce), ciphertext: Buffer.from(r.ciphertext), keyId: r.key_id }));
  }
}

/** Deletes the secrets of the given jobs: inside the transaction that ends them, or removes them. */
export async function deleteSecretsOfJobs(tx: Kysely<Database>, jobIds: string[]): Promise<void> {
  if (jobIds.length === 0) return;
  if (jobIds.length === 1) {
    // The end of every job: compiled once (store/compiled.ts).
    await runCompiled(tx, "secrets.deleteOfJob", [jobIds[0]], (p) => tx.deleteFrom("job_secrets").where("job_id", "=", p(0)));
    return;
  }
  await tx.deleteFrom("job_secrets").where("job_id", "in", jobIds).execute();
}
