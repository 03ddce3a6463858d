/**
 * The database schema as Kysely types. One schema serves SQLite and PostgreSQL:
 * ids are text made by the application, times are epoch milliseconds (integers), JSON is text,
 * booleans are 0/1 integers, log data is bytes (BLOB / bytea).
 */
import type { Generated, Selectable } from "kysely";
import type { JobState } from "../core/job-state.js";
import type { WorkerState } from "../core/worker-state.js";
import type { ResourceType } from "../core/worker-state.js";

export interface JobsTable {
  id: string;
  state: JobState;
  /** JSON array of strings. */
  command: string;
  script: string;
  provider: string;
  /** JSON object. */
  env: string;
  timeout_seconds: number;
  /** JSON object. */
  labels: string;
  image: string;
  /** Thousandths of a core; 0 means no limit. */
  cpu_millis: number;
  /** MiB; 0 means no limit. */
  memory_mb: number;
  /** "<API key name>:<key>" (storedIdempotencyKey in jobs.ts): unique, per API key. */
  idempotency_key: string | null;
  max_attempts: number;
  /** Attempts started so far; the current attempt's number. */
  attempts: number;
  /** Of those, attempts lost through no fault of the job (provider unavailable or disrupted): not counted against max_attempts. */
  uncounted_attempts: number;
  exit_code: number | null;
  reason: string;
  logs_truncated: number;
  logs_incomplete: number;
  /** A queued job is not provisioned before this time (retry backoff). */
  not_before_ms: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  /** Name of the API key that submitted the job; null when none did (before keys, or HODEI_AUTH=off). */
  submitted_by: string | null;
  // Resources: provider details per job (migration 0019).
  /** always | if-not-present | never. */
  pull_policy: Generated<string>;
  /** JSON object: Kubernetes node labels the pod must match (added to the provider's). */
  node_selector: Generated<string>;
  /** JSON array of core/v1 tolerations (added to the provider's). */
  tolerations: Generated<string>;
  /** Exit codes that make an attempt retryable: "" (none), "any", or ascending codes "3,4" (core/job-spec.ts). */
  retry_on_exit_codes: string;
  /** The job this one reruns (RerunJob); null for a job submitted directly. */
  rerun_of: string | null;
  /** JSON array of the names of the job's secrets (their values are in job_secrets, encrypted, while the job may run). */
  secret_names: Generated<string>;
  // Queue (migration 0013).
  /** Higher runs first (-100..100): the claim takes priority desc, then created_at, id (index jobs_queue). */
  priority: number;
  /** Seconds the job may wait to start once due; 0: no limit. */
  queue_timeout_seconds: number;
  /** When the job became due: its run-at, or its submission. Null for jobs from before 0013 (created_at). */
  run_at_ms: number | null;
  /**
   * run_at_ms + the queue timeout, while no attempt of the job was ever dispatched (index
   * jobs_queue_deadline); null when the job has no queue timeout or has started.
   */
  queue_deadline_ms: number | null;
  /** SHA-256 of the validated spec (core/spec-hash.ts), compared when an idempotency key is reused; null before 0013. */
  spec_hash: string | null;
  // Trace (migration 0024; core/trace-context.ts).
  /** The job's trace id when the control plane records its spans; "" when it does not. */
  trace_id: Generated<string>;
  /** The caller's W3C traceparent given at submit, normalised; "" for none. */
  trace_parent: Generated<string>;
  /** JSON array of the job's webhook URLs (migration 0025), told of its end. */
  notify: Generated<string>;
  /** The schedule that fired the job (migration 0026); null for a job submitted directly. */
  schedule_name: Generated<string | null>;
}

/**
 * One row per label of a job (migration 0014), so that ListJobs by label reads an index: a label's
 * newest jobs are one range of (key, value, created_at, job_id). Written with the job, removed with it.
 */
export interface JobLabelsTable {
  job_id: string;
  key: string;
  value: string;
  /** The job's created_at: ListJobs pages by (created_at, id), newest first. */
  created_at: number;
}

export interface WorkersTable {
  id: string;
  name: string;
  job_id: string;
  attempt: number;
  provider: string;
  provider_resource_id: string | null;
  resource_type: ResourceType | null;
  state: WorkerState;
  session_hash: string | null;
  /** What the agent said its hostname was: diagnostics only, never used to identify it. */
  reported_hostname: string | null;
  created_at: number;
  provisioned_at: number | null;
  registered_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  destroyed_at: number | null;
  registration_deadline_ms: number;
  last_heartbeat_ms: number | null;
  /** While the job already ended (cancel), the agent may finish flushing until this time. */
  stop_deadline_ms: number | null;
  failure_reason: string;
  destroy_attempts: number;
  last_error: string;
  /** Highest log seq of this attempt such that 1..log_seq are all received (0: none). */
  log_seq: Generated<number>;
  /** Bytes of log data stored for this attempt (what the log limit is checked against). */
  log_bytes: Generated<number>;
  /** 1 once the control plane cut this attempt's log at the limit and wrote its marker. */
  log_truncated: Generated<number>;
  /** When a Connect stream of this worker was first opened; a repeated Register is refused after it. */
  stream_connected_at: number | null;
  /** The command's exit code in this attempt, once the agent reported it (null: it did not exit). */
  exit_code: number | null;
  // Resources (migration 0020).
  /** How the provider applied the job's resource limits, in words; "" when none were asked for. */
  resources_applied: Generated<string>;
  /** What the provider says the worker waits for before it can run (an unschedulable pod); "" when nothing. */
  pending_reason: Generated<string>;
  /** Since when it has waited for that (epoch ms); null when it waits for nothing outside itself. */
  pending_since_ms: Generated<number | null>;
  // Replicas (migration 0023).
  /** The node (HODEI_NODE_ID) of the replica that started it; null on rows from before replicas. */
  node_id: Generated<string | null>;
  /** The replica whose provider start() for it is in flight; null once the start returned. */
  start_owner: Generated<string | null>;
  /** Past this time (present time of the judge) a start still recorded as in flight is not trusted, epoch ms. */
  start_deadline_ms: Generated<number | null>;
}

export interface OtpTokensTable {
  id: string;
  token_hash: string;
  job_id: string;
  attempt: number;
  worker_id: string;
  provider: string;
  provider_resource_id: string | null;
  resource_type: ResourceType | null;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
  /** SHA-256 of the instance key of the agent that consumed the token (null: none was sent). */
  instance_key_hash: string | null;
}

export interface JobLogsTable {
  /** Row id only: followers page by (attempt, seq), which is gap-free and ordered per attempt. */
  id: Generated<number>;
  job_id: string;
  attempt: number;
  seq: number;
  stream: string;
  /** The output's bytes exactly as received. */
  data: Buffer;
  time_ms: number;
}

/** A job removed by retention: enough to say so, exactly, for a while (see store/retention.ts). */
export interface RemovedJobsTable {
  id: string;
  finished_at: number;
  removed_at: number;
}

/** Facts about the installation, by key (e.g. "cluster_id"). */
export interface MetaTable {
  key: string;
  value: string;
}

/** An API key: its hash, never the key itself (see migrations/0011_api_keys.ts). */
export interface ApiKeysTable {
  /** The key's identity, never reused (a revoked key keeps its row). */
  name: string;
  key_hash: string;
  /** JSON array of scope names (core/scopes.ts). */
  scopes: string;
  created_at: number;
  /** Updated at most once a minute (see KeyQueries.touch). */
  last_used_at: number | null;
  revoked_at: number | null;
}

/** One secret of a job, encrypted (see migrations/0017_job_secrets.ts); deleted when the job ends. */
export interface JobSecretsTable {
  job_id: string;
  name: string;
  nonce: Buffer;
  /** The encrypted value with its GCM tag appended. */
  ciphertext: Buffer;
  /** Fingerprint of the key that sealed it. */
  key_id: string;
}

/** A named lease held by one replica at a time (migration 0022): `leader` for the leader steps. */
export interface LeasesTable {
  name: string;
  /** Replica id of the holder; "" when released. */
  holder: string;
  /** Incremented each time the lease changes hands (fencing counter). */
  epoch: number;
  expires_at_ms: number;
}

/** One running replica (migration 0022), renewed with the lease. */
export interface ReplicasTable {
  id: string;
  node_id: string;
  started_at_ms: number;
  renewed_at_ms: number;
  /** The replica's process (scheduler/process-key.ts), migration 0029; null where unknown. */
  process_key: string | null;
}

/** One webhook delivery of a job's end (migration 0025). */
export interface WebhookDeliveriesTable {
  id: string;
  job_id: string;
  url: string;
  state: WebhookDeliveryState;
  /** Requests made so far (one in flight counts). */
  attempts: number;
  /** When a pending delivery is due; while a request is in flight, when it may be taken again. */
  next_attempt_at: number;
  /** HTTP status of the last answer; null when there was none. */
  last_status: number | null;
  last_error: string;
  created_at: number;
  delivered_at: number | null;
}

export type WebhookDeliveryState = "pending" | "delivered" | "failed";

/** A job template submitted on a cron schedule (migration 0026, core/schedule.ts). Times are epoch ms. */
export interface SchedulesTable {
  name: string;
  cron: string;
  /** IANA name; "" is UTC. */
  timezone: string;
  /** JSON of the validated job template (JobSpec without secrets or idempotency key). */
  spec: string;
  /** skip | run-once. */
  missed_policy: string;
  /** allow | forbid. */
  concurrency: string;
  /** 0 | 1. */
  paused: number;
  /** The first tick not yet handled. */
  next_run_at: number;
  /** The tick of the last job fired. */
  last_run_at: number | null;
  last_job_id: string | null;
  /** Ticks that fired a job. */
  fired_ticks: Generated<number>;
  /** Ticks that fired none (missed, or concurrency forbid), with the last reason. */
  skipped_ticks: Generated<number>;
  last_skip_reason: Generated<string>;
  last_skipped_at: number | null;
  created_at: number;
  /** The API key that created it (its jobs are submitted as that key); null with auth off. */
  created_by: string | null;
}

export interface Database {
  schedules: SchedulesTable;
  jobs: JobsTable;
  workers: WorkersTable;
  otp_tokens: OtpTokensTable;
  job_logs: JobLogsTable;
  removed_jobs: RemovedJobsTable;
  meta: MetaTable;
  api_keys: ApiKeysTable;
  job_secrets: JobSecretsTable;
  job_labels: JobLabelsTable;
  leases: LeasesTable;
  replicas: ReplicasTable;
  webhook_deliveries: WebhookDeliveriesTable;
}

export type JobRow = Selectable<JobsTable>;
export type WorkerRow = Selectable<WorkersTable>;
export type OtpTokenRow = Selectable<OtpTokensTable>;
export type LogRow = Selectable<JobLogsTable>;
export type RemovedJobRow = Selectable<RemovedJobsTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type JobSecretRow = Selectable<JobSecretsTable>;
export type LeaseRow = Selectable<LeasesTable>;
export type ReplicaRow = Selectable<ReplicasTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type ScheduleRow = Selectable<SchedulesTable>;
