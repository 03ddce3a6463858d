/**
 * The one path that stores a submitted job, for the API's SubmitJob and for the ticks schedules
 * fire (schedules.ts). The caller has validated the spec (core/job-spec.ts) and checked who may
 * submit it; this stores it (with its secrets sealed for its id, or in the same transaction as the
 * schedule's advance), answers a reused idempotency key with its first job or a conflict, counts
 * and logs the submission, and wakes the reconcile pass of this replica and of every other.
 */
import type { Logger } from "pino";
import { AlreadyExistsError } from "../core/errors.js";
import { newId } from "../core/ids.js";
import type { JobSpec } from "../core/job-spec.js";
import type { SecretBox } from "../core/secret-box.js";
import { specHash } from "../core/spec-hash.js";
import type { Metrics } from "../metrics.js";
import type { JobRow } from "../store/schema.js";
import type { ScheduleAdvance, Store } from "../store/store.js";

export interface SubmitContext {
  store: Store;
  log: Logger;
  metrics: Metrics;
  /** Asks this replica's reconcile pass to run soon. */
  nudge(): void;
  /** Seals secrets for the new job's id; needed only for a spec that has secrets. */
  secretBox?: Pick<SecretBox, "seal">;
}

export interface Submission {
  spec: JobSpec;
  nowMs: number;
  /** The API key's name; null when none (auth off). */
  submittedBy: string | null;
  /** A schedule's tick: the job is stored with the schedule's advance, in one transaction. */
  schedule?: ScheduleAdvance & { tickMs: number };
}

/** The stored job and whether this call made it; null when a schedule's tick was handled elsewhere first. */
export async function submitJob(ctx: SubmitContext, s: Submission): Promise<{ job: JobRow; isNew: boolean } | null> {
  const { store } = ctx;
  const { spec } = s;
  const id = newId();
  let job: JobRow | null;
  if (s.schedule) {
    if (Object.keys(spec.secrets).length > 0) throw new Error("a schedule's job cannot have secrets");
    job = await store.schedules.fire(s.schedule, { id, spec, nowMs: s.nowMs, submittedBy: s.submittedBy, tickMs: s.schedule.tickMs });
    if (!job) return null;
  } else {
    const names = Object.keys(spec.secrets);
    if (names.length > 0 && !ctx.secretBox) throw new Error("submitJob: secrets given without a secret box");
    // Sealed for this job id (the associated data), so they cannot be opened as another job's.
    const sealed = names.map((name) => ctx.secretBox!.seal(id, name, spec.secrets[name]));
    job = await store.secrets.insertJob(id, spec, s.nowMs, s.submittedBy, sealed);
  }
  const isNew = job.id === id;
  if (!isNew && job.spec_hash !== null && job.spec_hash !== specHash(spec)) {
    // Jobs from before spec hashes (null) keep the old answer: the first job.
    throw new AlreadyExistsError(
      `idempotencyKey: "${spec.idempotencyKey}" was already used for job ${job.id} with a different spec; submit the same spec to get that job, or use a new key`,
    );
  }
  ctx.metrics.jobsSubmitted.inc({ provider: job.provider });
  ctx.log.info({ jobId: job.id, provider: job.provider, submittedBy: job.submitted_by, ...(s.schedule && { schedule: s.schedule.name }) }, "job submitted");
  ctx.nudge();
  // Other replicas' passes too (store/notifier.ts): a hint, sent without waiting.
  store.hint("reconcile");
  return { job, isNew };
}
