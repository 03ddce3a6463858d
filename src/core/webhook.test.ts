import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, it } from "node:test";
import { DEFAULT_WEBHOOK_RETRY, isWebhookSignatureValid, nextWebhookAttemptMs, webhookBody, webhookSignature } from "./webhook.js";

const EVENT = { jobId: "j1", state: "failed", exitCode: 3, reason: "the command exited with code 3", provider: "local", labels: { team: "a" }, attempts: 1, createdAtMs: 1000, finishedAtMs: 5000 };

describe("webhook signature", () => {
  it("is t=<seconds>,v1=<hex HMAC-SHA256 of `<t>.<body>`>", () => {
    const body = webhookBody("d1", EVENT);
    const expected = createHmac("sha256", "s3cret").update(`1700000000.${body}`).digest("hex");
    assert.equal(webhookSignature("s3cret", 1_700_000_000, body), `t=1700000000,v1=${expected}`);
  });

  it("verifies with the secret, and not with a changed body, another secret, or an old timestamp", () => {
    const body = webhookBody("d1", EVENT);
    const header = webhookSignature("s3cret", 1_700_000_000, body);
    assert.equal(isWebhookSignatureValid(header, body, "s3cret", 1_700_000_010), true);
    assert.equal(isWebhookSignatureValid(header, body.replace('"failed"', '"succeeded"'), "s3cret", 1_700_000_010), false);
    assert.equal(isWebhookSignatureValid(header, body, "other", 1_700_000_010), false);
    assert.equal(isWebhookSignatureValid(header, body, "s3cret", 1_700_000_000 + 301), false, "replayed after 5 minutes");
    assert.equal(isWebhookSignatureValid("t=abc,v1=00", body, "s3cret", 1_700_000_000), false);
    assert.equal(isWebhookSignatureValid("", body, "s3cret", 1_700_000_000), false);
  });

  it("puts the job's end in the body and nothing of its env, secrets or command", () => {
    const parsed = JSON.parse(webhookBody("d1", EVENT)) as Record<string, unknown>;
    assert.deepEqual(parsed, {
      type: "job.finished",
      id: "d1",
      job: { id: "j1", state: "failed", exitCode: 3, reason: "the command exited with code 3", provider: "local", labels: { team: "a" }, attempts: 1, createdAt: "1970-01-01T00:00:01.000Z", finishedAt: "1970-01-01T00:00:05.000Z" },
    });
  });
});

describe("nextWebhookAttemptMs", () => {
  it("backs off from 10 s doubling to an hour, with equal jitter", () => {
    const low = () => 0;
    const high = () => 1;
    assert.equal(nextWebhookAttemptMs(1, 0, 0, DEFAULT_WEBHOOK_RETRY, low), 5_000);
    assert.equal(nextWebhookAttemptMs(1, 0, 0, DEFAULT_WEBHOOK_RETRY, high), 10_000);
    assert.equal(nextWebhookAttemptMs(2, 0, 0, DEFAULT_WEBHOOK_RETRY, high), 20_000);
    assert.equal(nextWebhookAttemptMs(4, 0, 0, DEFAULT_WEBHOOK_RETRY, high), 80_000);
    assert.equal(nextWebhookAttemptMs(20, 0, 0, DEFAULT_WEBHOOK_RETRY, high), 3_600_000, "capped at an hour");
    assert.equal(nextWebhookAttemptMs(500, 0, 0, DEFAULT_WEBHOOK_RETRY, low), 1_800_000, "no overflow for a huge count");
  });

  it("gives up once the next request would come more than a day after the job ended", () => {
    const day = DEFAULT_WEBHOOK_RETRY.giveUpAfterMs;
    assert.equal(nextWebhookAttemptMs(30, 0, day - 3_600_000, DEFAULT_WEBHOOK_RETRY, () => 1), day);
    assert.equal(nextWebhookAttemptMs(30, 0, day - 3_600_000 + 1, DEFAULT_WEBHOOK_RETRY, () => 1), null);
  });
});
