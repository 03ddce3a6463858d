/**
 * Every read and write of the control plane's state, grouped by what they touch:
 *   jobs      the jobs table (submit, claim, guarded transitions, listing)
 *   workers   the workers table (guarded transitions, heartbeats, lookups)
 *   tokens    the otp_tokens table (consume, list)
 *   attempts  operations on one attempt that write several tables in one transaction
 *   logs      the job_logs table
 *   retention removal of finished jobs with their rows, and the records of removed jobs
 *   meta      facts about the installation (the cluster id)
 *   keys      the api_keys table (authenticate a call, create, list, revoke)
 *   secrets   the job_secrets table (a job inserted with its sealed secrets, read at dispatch)
 *   replicas  the leader lease and the replicas' presence rows (several control planes, one database)
 *   webhooks  the webhook_deliveries table (written when a job ends, sent by scheduler/webhooks.ts)
 *   schedules job templates fired on a cron schedule (a tick's job and the schedule's advance in one transaction)
 * Times are epoch ms from the caller; the store reads no clock.
 * `notifier` carries hints between the processes of this database (notifier.ts); `hint` sends one
 * without waiting and merges a job's "logs" hints.
 */
import { randomUUID } from "node:crypto";
import { type Kysely, sql } from "kysely";
import { AttemptQueries } from "./attempts.js";
import type { DatabaseKind } from "./database.js";
import { JobQueries } from "./jobs.js";
import { KeyQueries } from "./keys.js";
import { LogQueries } from "./logs.js";
import { MetaQueries } from "./meta.js";
import { CoalescingPublisher, LocalNotifier, type Notifier, type NotifyChannel } from "./notifier.js";
import { RetentionQueries } from "./retention.js";
import { SecretQueries } from "./secrets.js";
import { ReplicaQueries } from "./replicas.js";
import { ScheduleQueries } from "./schedules.js";
import type { Database } from "./schema.js";
import { TokenQueries } from "./tokens.js";
import { WorkerQueries } from "./workers.js";
import { WebhookQueries } from "./webhooks.js";

export type { JobListQuery, JobPatch, JobSearchQuery, JobSearchResult } from "./jobs.js";
export type { WorkerPatch } from "./workers.js";
export type { NewToken, NewWorker } from "./attempts.js";
export type { LogChunkInput } from "./logs.js";
export type { DeliveryOutcome } from "./webhooks.js";

export interface StoreOptions {
  /** The server's webhook URLs (HODEI_WEBHOOK_URL): every job's end is told to them too. Default none. */
  webhookUrls?: readonly string[];
}
export type { NewApiKey } from "./keys.js";
export type { NewSchedule, ScheduleAdvance, ScheduledJob } from "./schedules.js";

export class Store {
  readonly jobs: JobQueries;
  readonly workers: WorkerQueries;
  readonly tokens: TokenQueries;
  readonly attempts: AttemptQueries;
  readonly logs: LogQueries;
  readonly retention: RetentionQueries;
  readonly meta: MetaQueries;
  readonly keys: KeyQueries;
  readonly secrets: SecretQueries;
  private readonly hints: CoalescingPublisher;
  readonly replicas: ReplicaQueries;
  readonly webhooks: WebhookQueries;
  readonly schedules: ScheduleQueries;

  constructor(
    readonly db: Kysely<Database>,
    readonly kind: DatabaseKind,
    readonly notifier: Notifier = new LocalNotifier(),
    options: StoreOptions = {},
  ) {
    // A hint that cannot be sent is dropped: the database is then failing every other statement too, and polling covers it.
    this.hints = new CoalescingPublisher(notifier, () => {});
    this.jobs = new JobQueries(db, kind);
    this.workers = new WorkerQueries(db);
    this.tokens = new TokenQueries(db);
    this.attempts = new AttemptQueries(db, kind, options.webhookUrls);
    this.logs = new LogQueries(db);
    this.retention = new RetentionQueries(db, kind);
    this.meta = new MetaQueries(db);
    this.keys = new KeyQueries(db);
    this.secrets = new SecretQueries(db, kind);
    this.replicas = new ReplicaQueries(db);
    this.webhooks = new WebhookQueries(db);
    this.schedules = new ScheduleQueries(db, kind);
  }

  /**
   * This store's mark on its "reconcile" hints (notifier.ts): whoever publishes one has nudged its
   * own pass already, so its own reconciler ignores the hint when it comes back (in process on
   * SQLite, through LISTEN on PostgreSQL) instead of running a second pass for nothing.
   */
  readonly hintOrigin = randomUUID();

  /** Sends a hint (notifier.ts) without waiting; never throws. isUrgent: a "logs" hint not merged (CoalescingPublisher). */
  hint(channel: NotifyChannel, payload = "", isUrgent = false): void {
    this.hints.publish(channel, channel === "reconcile" && payload === "" ? this.hintOrigin : payload, isUrgent);
  }

  async close(): Promise<void> {
    this.hints.close();
    await this.notifier.close();
    await this.db.destroy();
  }

  /** One trivial statement: is the database there and answering (readiness)? Costs the same at any size. */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  /** Raw access for tests and diagnostics. */
  async countRows(table: keyof Database): Promise<number> {
    const row = await this.db
      .selectFrom(table)
      .select(sql<number>`count(*)`.as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
