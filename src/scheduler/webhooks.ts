/**
 * The webhook step: sends the due deliveries of jobs' ends (store/webhooks.ts) and records each
 * answer. A reconcile step of the leader (one replica sends), never on a job's path: the
 * transaction that ends a job only writes its deliveries, and the step starts the requests off the
 * pass, at most `concurrency` at a time, each with a time limit; the pass does not wait for them.
 *
 * A 2xx answer delivers. Anything else (another status, a 3xx included, no connection, no answer in
 * time) is tried again after a backoff with jitter (core/webhook.ts), until the next request would
 * come more than a day after the job ended: then the delivery has failed. A URL refused by the
 * address rule fails at once. At least once: a delivery is taken with a lease (store/webhooks.ts),
 * so one whose request was sent but whose answer was never recorded (the process died, the
 * database failed) is sent again once the lease passes; receivers drop repeats by Hodei-Delivery.
 */
import type { Logger } from "pino";
import type { Random } from "../core/backoff.js";
import type { Clock } from "../core/clock.js";
import { toError } from "../core/errors.js";
import { DEFAULT_WEBHOOK_RETRY, type JobEndEvent, nextWebhookAttemptMs, webhookBody, webhookSignature, type WebhookRetryPolicy } from "../core/webhook.js";
import { displayedWebhookUrl } from "../core/webhook-address.js";
import type { Metrics } from "../metrics.js";
import type { JobRow, WebhookDeliveryRow } from "../store/schema.js";
import type { Store } from "../store/store.js";
import { sendWebhook, type WebhookSender } from "./webhook-send.js";

export interface WebhookSettings {
  /** HMAC-SHA256 key of the Hodei-Signature header (HODEI_WEBHOOK_SECRET); "" sends unsigned. */
  secret: string;
  /** Private, loopback and link-local addresses may be sent to (HODEI_WEBHOOK_ALLOW_PRIVATE). */
  isPrivateAllowed: boolean;
  /** Time limit of one request, ms. Default 10000. */
  timeoutMs?: number;
  /** Requests in flight at most. Default 8. */
  concurrency?: number;
  /** When a failed delivery is tried again, and when it is given up on. Default DEFAULT_WEBHOOK_RETRY. */
  retry?: WebhookRetryPolicy;
  /** Sends one request; tests give their own. Default sendWebhook. */
  send?: WebhookSender;
}

export interface WebhookDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  metrics: Pick<Metrics, "webhookDeliveries">;
  random: Random;
  settings: WebhookSettings;
}

export const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;
export const DEFAULT_WEBHOOK_CONCURRENCY = 8;
/** A taken delivery is not taken again before its request's time limit plus this, ms. */
export const WEBHOOK_LEASE_MARGIN_MS = 30_000;

export class WebhookDispatcher {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly retry: WebhookRetryPolicy;
  private readonly send: WebhookSender;

  constructor(private readonly d: WebhookDeps) {
    this.timeoutMs = d.settings.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
    this.concurrency = d.settings.concurrency ?? DEFAULT_WEBHOOK_CONCURRENCY;
    this.retry = d.settings.retry ?? DEFAULT_WEBHOOK_RETRY;
    this.send = d.settings.send ?? sendWebhook;
  }

  /**
   * The step: takes as many due deliveries as there are free request slots and starts their
   * requests without waiting for them. Returns how many it started.
   */
  async runOnce(): Promise<number> {
    const free = this.concurrency - this.inFlight.size;
    if (free <= 0 || this.stopping.signal.aborted) return 0;
    const now = this.d.clock.nowMs();
    const taken = await this.d.store.webhooks.takeDue(now, now + this.timeoutMs + WEBHOOK_LEASE_MARGIN_MS, free);
    if (taken.length === 0) return 0;
    const jobs = await this.d.store.jobs.getMany(taken.map((delivery) => delivery.job_id));
    for (const delivery of taken) {
      const running = this.deliver(delivery, jobs.get(delivery.job_id)).catch((err: unknown) => {
        // The answer is not recorded: the delivery stays taken until its lease passes, then is sent again.
        this.d.log.error({ err: toError(err), deliveryId: delivery.id, jobId: delivery.job_id }, "could not record a webhook delivery's answer; it is sent again later");
      });
      this.inFlight.add(running);
      void running.finally(() => this.inFlight.delete(running));
    }
    return taken.length;
  }

  /** Resolves when every request started so far has ended and been recorded (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Ends the requests in flight without recording them (they are sent again after their lease) and starts no more. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.settle();
  }

  private async deliver(delivery: WebhookDeliveryRow, job: JobRow | undefined): Promise<void> {
    const { store, clock, log, metrics } = this.d;
    if (!job) {
      // Cannot happen while deliveries go with their job (retention); recorded rather than retried for a day.
      await store.webhooks.markFailedAttempt(delivery.id, delivery.attempts, { status: null, error: "the job no longer exists" }, null);
      return;
    }
    const body = webhookBody(delivery.id, jobEndEvent(job));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "hodei-webhooks",
      "hodei-delivery": delivery.id,
    };
    if (this.d.settings.secret) headers["hodei-signature"] = webhookSignature(this.d.settings.secret, Math.floor(clock.nowMs() / 1000), body);
    const outcome = await this.send(
      { url: delivery.url, body, headers, timeoutMs: this.timeoutMs, isPrivateAllowed: this.d.settings.isPrivateAllowed },
      this.stopping.signal,
    );
    if (this.stopping.signal.aborted) return; // stopped mid-request: sent again after the lease
    const now = clock.nowMs();
    const fields = { deliveryId: delivery.id, jobId: job.id, url: displayedWebhookUrl(delivery.url), attempt: delivery.attempts, status: outcome.status };
    if (outcome.status !== null && outcome.status >= 200 && outcome.status < 300) {
      if (await store.webhooks.markDelivered(delivery.id, delivery.attempts, outcome.status, now)) metrics.webhookDeliveries.inc({ result: "delivered" });
      return;
    }
    const error = outcome.error || `answered HTTP ${outcome.status} (only 2xx delivers)`;
    const next = outcome.isRefused ? null : nextWebhookAttemptMs(delivery.attempts, delivery.created_at, now, this.retry, this.d.random);
    if (!(await store.webhooks.markFailedAttempt(delivery.id, delivery.attempts, { status: outcome.status, error }, next))) return;
    metrics.webhookDeliveries.inc({ result: next === null ? "failed" : "retried" });
    if (next === null) log.warn({ ...fields, error }, "webhook delivery given up");
    else log.info({ ...fields, error, nextAttemptAt: new Date(next).toISOString() }, "webhook request failed; tried again later");
  }
}

/** What a delivery says of its job: never env, secrets, the command or the log. */
function jobEndEvent(job: JobRow): JobEndEvent {
  return {
    jobId: job.id,
    state: job.state,
    exitCode: job.exit_code,
    reason: job.reason,
    provider: job.provider,
    labels: JSON.parse(job.labels) as Record<string, string>,
    attempts: job.attempts,
    createdAtMs: job.created_at,
    finishedAtMs: job.finished_at,
  };
}
