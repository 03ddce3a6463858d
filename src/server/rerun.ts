/**
 * What RerunJob copies from a finished job: its whole spec as stored, except the idempotency key
 * (a rerun is a new submission, not a repeat of the first one). The copy is validated again as
 * any submit is, against today's providers and limits.
 *
 * A rerun is due at once: the original's run-at or delay is not copied.
 *
 * Invariant: every field of the spec is copied. `SpecCopy` requires each JobSpec field but the
 * idempotency key, so a field added to JobSpec does not compile here until it is copied too.
 */
import { ConflictError } from "../core/errors.js";
import type { JobSpec } from "../core/job-spec.js";
import type { JobRow } from "../store/schema.js";

type SpecCopy = Required<Omit<JobSpec, "idempotencyKey">>;

/** The spec a rerun of `job` submits. */
export function rerunSpec(job: JobRow): SpecCopy & { idempotencyKey: "" } {
  return {
    command: JSON.parse(job.command) as string[],
    script: job.script,
    provider: job.provider,
    env: JSON.parse(job.env) as Record<string, string>,
    timeoutSeconds: job.timeout_seconds,
    labels: JSON.parse(job.labels) as Record<string, string>,
    maxAttempts: job.max_attempts,
    image: job.image,
    cpuMillis: job.cpu_millis,
    memoryMb: job.memory_mb,
    retryOnExitCodes: job.retry_on_exit_codes,
    pullPolicy: job.pull_policy as JobSpec["pullPolicy"],
    nodeSelector: JSON.parse(job.node_selector) as Record<string, string>,
    tolerations: JSON.parse(job.tolerations) as JobSpec["tolerations"],
    priority: job.priority,
    queueTimeoutSeconds: job.queue_timeout_seconds,
    // A rerun is due now: the original's run-at or delay is in the past.
    runAtMs: 0,
    delaySeconds: 0,
    // The values were deleted when the job ended: refuseLostSecrets stops a rerun of a job that had any.
    secrets: {},
    // A rerun is a new submit: its trace is decided then (job-service.ts), not copied.
    trace: { traceId: "", traceParent: "" },
    notify: JSON.parse(job.notify) as string[],
    idempotencyKey: "",
  };
}

/**
 * Refuses to rerun a job that was given secrets: their values are deleted when a job ends, so a
 * copy would run without them. The user submits it again with the secrets instead.
 */
export function refuseLostSecrets(job: JobRow): void {
  const names = secretNamesOf(job);
  if (names.length === 0) return;
  throw new ConflictError(
    `job ${job.id} was given the secrets ${names.join(", ")}, whose values were deleted when it ended, so it cannot be rerun without them; submit it again with those secrets`,
  );
}

/** The names of the secrets the job was given (their values are never kept past its end). */
function secretNamesOf(job: JobRow): string[] {
  return JSON.parse(job.secret_names) as string[];
}
