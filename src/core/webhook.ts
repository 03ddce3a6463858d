/**
 * Webhooks of a job's end: what is sent, how it is signed, and when a failed delivery is tried
 * again. Pure: the dispatcher (scheduler/webhooks.ts) calls these and writes what they say.
 *
 * Signing follows Stripe's and Svix's scheme: the signed text is `<t>.<body>`, where t is the
 * request's time in unix seconds, so a receiver that checks t against its clock (5 minutes) refuses
 * an old request replayed, and one that keeps the delivery id (Hodei-Delivery, also the body's
 * `id`) drops a repeat: delivery is at least once, so a receiver may see the same id twice.
 *
 *   Hodei-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "1767225600.<body>")>
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { equalJitterMs, type Random } from "./backoff.js";

/** What a delivery's body says: the job's end, never its env, secrets, command or log. */
export interface JobEndEvent {
  jobId: string;
  state: string;
  exitCode: number | null;
  reason: string;
  provider: string;
  labels: Record<string, string>;
  attempts: number;
  createdAtMs: number;
  finishedAtMs: number | null;
}

export const WEBHOOK_EVENT_TYPE = "job.finished";

/** The body of delivery `deliveryId` (JSON). The same text on every attempt of that delivery. */
export function webhookBody(deliveryId: string, event: JobEndEvent): string {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return JSON.stringify({
    type: WEBHOOK_EVENT_TYPE,
    id: deliveryId,
    job: {
      id: event.jobId,
      state: event.state,
      exitCode: event.exitCode,
      reason: event.reason,
      provider: event.provider,
      labels: event.labels,
      attempts: event.attempts,
      createdAt: iso(event.createdAtMs),
      finishedAt: iso(event.finishedAtMs),
    },
  });
}

/** The Hodei-Signature header of `body` sent at `unixSeconds`. */
export function webhookSignature(secret: string, unixSeconds: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * The receiver's check (the one the README shows): the header's t is within `toleranceSeconds` of
 * now and one of its v1 values is the HMAC of `<t>.<body>` under the secret. Compared in constant
 * time. Hodei uses it in tests; receivers copy it.
 */
export function isWebhookSignatureValid(header: string, body: string, secret: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const parts = header.split(",").map((p) => p.trim().split("="));
  const t = Number(parts.find(([k]) => k === "t")?.[1]);
  if (!Number.isSafeInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return parts
    .filter(([k, v]) => k === "v1" && /^[0-9a-f]{64}$/.test(v ?? ""))
    .some(([, v]) => timingSafeEqual(Buffer.from(v, "hex"), expected));
}

/** When failed deliveries are tried again. */
export interface WebhookRetryPolicy {
  /** The backoff's ceiling after the first failed request, ms; it doubles with each further one. */
  baseMs: number;
  /** The ceiling never grows past this, ms. */
  capMs: number;
  /** A delivery is given up on (failed) once its next request would come later than this after the job ended, ms. */
  giveUpAfterMs: number;
}

/** 10 s doubling to an hour, for a day: about 35 requests to a receiver that is down all day. */
export const DEFAULT_WEBHOOK_RETRY: WebhookRetryPolicy = { baseMs: 10_000, capMs: 3_600_000, giveUpAfterMs: 86_400_000 };

/**
 * After failed request number `attempts` of a delivery created at `createdAtMs`: when to try
 * again, or null to give up (the next request would fall past the policy's day). Equal jitter, as
 * the job retries (core/backoff.ts), so that a receiver that was down does not get every delivery at
 * once when it is back.
 */
export function nextWebhookAttemptMs(attempts: number, createdAtMs: number, nowMs: number, policy: WebhookRetryPolicy, random: Random): number | null {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, Math.min(attempts - 1, 40)));
  const next = nowMs + equalJitterMs(ceiling, random);
  return next - createdAtMs > policy.giveUpAfterMs ? null : next;
}
