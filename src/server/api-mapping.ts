/**
 * Turns stored rows into API messages. OTP tokens and API keys never exist here: rows hold only
 * hashes. Job env values are left out when the caller may not see them (access.ts). Secrets are
 * names only: their values are not in a job row at all.
 */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type ApiKey,
  ApiKeySchema,
  type Attempt,
  AttemptSchema,
  type Job,
  JobSchema,
  type OtpToken,
  type SubmitJobRequest,
  OtpTokenSchema,
  TimelineSchema,
  type Toleration,
  TolerationSchema,
  type WebhookDelivery,
  WebhookDeliverySchema,
  type Worker,
  WorkerSchema,
} from "../gen/hodei/v1/api_pb.js";
import { isTerminal } from "../core/job-state.js";
import { shownTraceId } from "../core/trace-context.js";
import type { JobSpec } from "../core/job-spec.js";
import type { Toleration as CoreToleration } from "../core/placement.js";
import { displayedWebhookUrl } from "../core/webhook-address.js";
import { scopesOf } from "../store/keys.js";
import type { ApiKeyRow, JobRow, OtpTokenRow, WebhookDeliveryRow, WorkerRow } from "../store/schema.js";

function ts(ms: number | null | undefined): Timestamp | undefined {
  return ms === null || ms === undefined ? undefined : timestampFromMs(ms);
}

/** queued is the job's own; `finishedMs` is the job's end for a job, the worker's for an attempt. */
function timeline(job: JobRow, worker: WorkerRow | undefined, finishedMs: number | null | undefined) {
  return create(TimelineSchema, {
    queued: ts(job.created_at),
    provisioned: ts(worker?.provisioned_at),
    registered: ts(worker?.registered_at),
    started: ts(worker?.started_at),
    finished: ts(finishedMs),
    destroyed: ts(worker?.destroyed_at),
  });
}

/**
 * Why an attempt ended, in words: its own failure reason when it has one (a loss, a retried exit
 * code), else, for the job's last attempt once the job has ended, the job's reason. Empty while it runs.
 */
function attemptReason(job: JobRow, worker: WorkerRow): string {
  if (worker.failure_reason) return worker.failure_reason;
  if (worker.attempt !== job.attempts || !isTerminal(job.state)) return "";
  if (job.reason) return job.reason;
  return worker.exit_code === null ? job.state : `the command exited with code ${worker.exit_code}`;
}

function toAttempt(job: JobRow, worker: WorkerRow): Attempt {
  return create(AttemptSchema, {
    number: worker.attempt,
    workerId: worker.id,
    workerName: worker.name,
    provider: worker.provider,
    providerResourceId: worker.provider_resource_id ?? "",
    resourceType: worker.resource_type ?? "",
    workerState: worker.state,
    failureReason: worker.failure_reason,
    timeline: timeline(job, worker, worker.finished_at),
    exitCode: worker.exit_code ?? undefined,
    reason: attemptReason(job, worker),
  });
}

/** Each value replaced by "": what a caller without the read scope sees of a job's env. */
function redacted(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(env).map((name) => [name, ""]));
}

/**
 * A webhook delivery, its URL without credentials, query or fragment; a caller that may not see
 * env values (no read scope) sees its origin only (the server's HODEI_WEBHOOK_URL is among them).
 */
function toWebhookDelivery(row: WebhookDeliveryRow, isEnvShown: boolean): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    id: row.id,
    url: displayedWebhookUrl(row.url, !isEnvShown),
    state: row.state,
    attempts: row.attempts,
    lastStatus: row.last_status ?? 0,
    lastError: row.last_error,
    createdAt: ts(row.created_at),
    deliveredAt: ts(row.delivered_at),
    nextAttemptAt: row.state === "pending" ? ts(row.next_attempt_at) : undefined,
  });
}

/**
 * `workers` are the job's workers ordered by attempt; isEnvShown: may the caller see env values.
 * `deliveries`: its webhook deliveries (GetJob reads them; listings leave them out).
 */
export function toJob(job: JobRow, workers: WorkerRow[], isEnvShown: boolean, deliveries: WebhookDeliveryRow[] = []): Job {
  // A queued job has no current worker (an earlier attempt's worker belongs to the history only).
  const latest = job.state === "queued" ? undefined : (workers.filter((w) => w.attempt === job.attempts).at(-1) ?? workers.at(-1));
  return create(JobSchema, {
    id: job.id,
    state: job.state,
    command: JSON.parse(job.command) as string[],
    script: job.script,
    provider: job.provider,
    env: isEnvShown ? (JSON.parse(job.env) as Record<string, string>) : redacted(JSON.parse(job.env) as Record<string, string>),
    envRedacted: !isEnvShown,
    timeoutSeconds: job.timeout_seconds,
    labels: JSON.parse(job.labels) as Record<string, string>,
    image: job.image,
    exitCode: job.exit_code ?? undefined,
    reason: job.reason,
    attempts: job.attempts,
    uncountedAttempts: job.uncounted_attempts,
    maxAttempts: job.max_attempts,
    createdAt: ts(job.created_at),
    finishedAt: ts(job.finished_at),
    timeline: timeline(job, latest, job.finished_at ?? latest?.finished_at),
    attemptHistory: workers.map((w) => toAttempt(job, w)),
    logsTruncated: job.logs_truncated === 1,
    logsIncomplete: job.logs_incomplete === 1,
    resources: { cpuMillis: job.cpu_millis, memoryMb: job.memory_mb },
    submittedBy: job.submitted_by ?? "",
    retryOnExitCodes: job.retry_on_exit_codes,
    rerunOf: job.rerun_of ?? "",
    scheduleName: job.schedule_name ?? "",
    // Names only: a secret's value never leaves the server but on the worker stream.
    secretNames: JSON.parse(job.secret_names) as string[],
    priority: job.priority,
    queueTimeoutSeconds: job.queue_timeout_seconds,
    runAt: ts(job.run_at_ms ?? job.created_at),
    // Resources: provider details per job, and how the latest attempt's provider applied the limits.
    pullPolicy: job.pull_policy,
    nodeSelector: JSON.parse(job.node_selector) as Record<string, string>,
    tolerations: (JSON.parse(job.tolerations) as CoreToleration[]).map(tolerationToApi),
    resourcesApplied: latest?.resources_applied ?? workers.at(-1)?.resources_applied ?? "",
    traceId: shownTraceId(job),
    deliveries: deliveries.map((row) => toWebhookDelivery(row, isEnvShown)),
  });
}

/** A toleration as stored (core/placement.ts) as the API's message. */
export function tolerationToApi(t: CoreToleration): Toleration {
  return create(TolerationSchema, {
    key: t.key,
    operator: t.operator,
    value: t.value,
    effect: t.effect,
    tolerationSeconds: t.tolerationSeconds === undefined ? undefined : BigInt(t.tolerationSeconds),
  });
}

/** The API's toleration as core/placement.ts validates it (a number of seconds, unset when absent). */
export function tolerationFromApi(t: Toleration): CoreToleration {
  const seconds = t.tolerationSeconds === undefined ? undefined : Number(t.tolerationSeconds);
  return { key: t.key, operator: t.operator, value: t.value, effect: t.effect, tolerationSeconds: seconds } as CoreToleration;
}

export function toWorker(worker: WorkerRow): Worker {
  return create(WorkerSchema, {
    id: worker.id,
    name: worker.name,
    provider: worker.provider,
    providerResourceId: worker.provider_resource_id ?? "",
    resourceType: worker.resource_type ?? "",
    state: worker.state,
    jobId: worker.job_id,
    attempt: worker.attempt,
    createdAt: ts(worker.created_at),
    lastHeartbeatAt: ts(worker.last_heartbeat_ms),
    destroyedAt: ts(worker.destroyed_at),
    lastError: worker.last_error,
  });
}

export function toOtpToken(token: OtpTokenRow, nowMs: number): OtpToken {
  return create(OtpTokenSchema, {
    id: token.id,
    provider: token.provider,
    providerResourceId: token.provider_resource_id ?? "",
    resourceType: token.resource_type ?? "",
    consumed: token.consumed_at !== null,
    jobId: token.job_id,
    workerId: token.worker_id,
    attempt: token.attempt,
    createdAt: ts(token.created_at),
    expiresAt: ts(token.expires_at),
    consumedAt: ts(token.consumed_at),
    expired: token.consumed_at === null && token.expires_at <= nowMs,
  });
}

export function toApiKey(key: ApiKeyRow): ApiKey {
  return create(ApiKeySchema, {
    name: key.name,
    scopes: scopesOf(key),
    createdAt: ts(key.created_at),
    lastUsedAt: ts(key.last_used_at),
    revokedAt: ts(key.revoked_at),
  });
}

/** A SubmitJobRequest as the input of core/job-spec.ts validateJobSpec (SubmitJob, and a schedule's template). */
export function specInputOf(req: SubmitJobRequest): Partial<JobSpec> {
  return {
    command: req.command,
    script: req.script,
    provider: req.provider,
    env: req.env,
    timeoutSeconds: req.timeoutSeconds,
    labels: req.labels,
    maxAttempts: req.maxAttempts,
    image: req.image,
    idempotencyKey: req.idempotencyKey,
    cpuMillis: req.resources?.cpuMillis ?? 0,
    memoryMb: req.resources?.memoryMb ?? 0,
    // Resources: provider details per job (validated in core/placement.ts).
    pullPolicy: req.pullPolicy as JobSpec["pullPolicy"],
    nodeSelector: req.nodeSelector,
    tolerations: req.tolerations.map(tolerationFromApi),
    retryOnExitCodes: req.retryOnExitCodes,
    secrets: req.secrets,
    priority: req.priority,
    queueTimeoutSeconds: req.queueTimeoutSeconds,
    runAtMs: req.runAt ? timestampMs(req.runAt) : 0,
    delaySeconds: req.delaySeconds,
    notify: req.notify,
  };
}
