/**
 * The webhook step on a real store, with a hand-moved clock and direct calls of the step (never a
 * sleep): what is sent and signed, the backoff schedule, giving up after a day, at least once when
 * the answer is lost between the send and its record, the bound on requests in flight, and a URL
 * refused by the address rule (refused before any connection: nothing leaves this machine).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { validateJobSpec } from "../core/job-spec.js";
import { DEFAULT_WEBHOOK_RETRY, isWebhookSignatureValid } from "../core/webhook.js";
import { createMetrics } from "../metrics.js";
import { openDatabase } from "../store/database.js";
import { driveJob } from "../store/lifecycle.contract.js";
import { Store } from "../store/store.js";
import type { SendOutcome, WebhookRequest } from "./webhook-send.js";
import { WEBHOOK_LEASE_MARGIN_MS, WebhookDispatcher, type WebhookSettings } from "./webhooks.js";

const SECRET = "whsec-0123456789abcdef";
const URL_A = "https://hooks.example.com/a";
const TIMEOUT_MS = 10_000;
const LEASE_MS = TIMEOUT_MS + WEBHOOK_LEASE_MARGIN_MS;

/** A receiver in memory: records each request with the clock's time and answers as told. */
class FakeReceiver {
  readonly requests: (WebhookRequest & { atMs: number })[] = [];
  answers: (SendOutcome | (() => Promise<SendOutcome>))[] = [];
  fallback: SendOutcome = { status: 200, error: "", isRefused: false };
  constructor(private readonly clock: ManualClock) {}
  readonly send = async (request: WebhookRequest): Promise<SendOutcome> => {
    this.requests.push({ ...request, atMs: this.clock.nowMs() });
    const next = this.answers.shift() ?? this.fallback;
    return typeof next === "function" ? next() : next;
  };
}

describe("webhook step", () => {
  let store: Store;
  let clock: ManualClock;
  let receiver: FakeReceiver;
  let metrics: ReturnType<typeof createMetrics>;
  let dispatcher: WebhookDispatcher;
  const log = pino({ level: "silent" });

  const make = (settings: Partial<WebhookSettings> = {}) =>
    new WebhookDispatcher({ store, clock, log, metrics, random: () => 1, settings: { secret: SECRET, isPrivateAllowed: false, timeoutMs: TIMEOUT_MS, send: receiver.send, ...settings } });

  beforeEach(async () => {
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    clock = new ManualClock(1_767_225_600_000);
    receiver = new FakeReceiver(clock);
    metrics = createMetrics();
    dispatcher = make();
  });
  afterEach(async () => {
    await dispatcher.stop();
    await store.close();
  });

  /** One pass of the step, and its requests' ends. */
  async function step(d = dispatcher): Promise<number> {
    const started = await d.runOnce();
    await d.settle();
    return started;
  }

  async function deliveries(jobId = "j") {
    return store.webhooks.listOfJob(jobId);
  }

  const counted = async (result: string) => (await metrics.webhookDeliveries.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

  it("posts the job's end once, signed, and records it delivered", async () => {
    await driveJob(store, clock, "j", "ended", { end: "failed", spec: { notify: [URL_A], labels: { team: "infra" }, env: { TOKEN: "env-value" }, secrets: {} } });
    assert.equal(await step(), 1);
    assert.equal(receiver.requests.length, 1);
    const [request] = receiver.requests;
    const [row] = await deliveries();
    assert.equal(request.url, URL_A);
    assert.equal(request.headers["content-type"], "application/json");
    assert.equal(request.headers["hodei-delivery"], row.id);
    assert.equal(isWebhookSignatureValid(request.headers["hodei-signature"], request.body, SECRET, clock.nowMs() / 1000), true);
    assert.match(request.headers["hodei-signature"], new RegExp(`^t=${clock.nowMs() / 1000},v1=[0-9a-f]{64}$`));
    const body = JSON.parse(request.body) as { type: string; id: string; job: Record<string, unknown> };
    assert.equal(body.type, "job.finished");
    assert.equal(body.id, row.id);
    assert.deepEqual([body.job.id, body.job.state, body.job.exitCode, body.job.provider, body.job.labels], ["j", "failed", 1, "local", { team: "infra" }]);
    assert.ok(!request.body.includes("env-value") && !request.body.includes("echo"), "no env value, no command");
    assert.deepEqual([row.state, row.attempts, row.last_status, row.delivered_at], ["delivered", 1, 200, clock.nowMs()]);
    assert.equal(await counted("delivered"), 1);
    assert.equal(await step(), 0, "never sent again");
  });

  it("sends unsigned when no secret is configured", async () => {
    dispatcher = make({ secret: "" });
    await driveJob(store, clock, "j", "ended", { spec: { notify: [URL_A] } });
    await step();
    assert.equal(receiver.requests[0].headers["hodei-signature"], undefined);
    assert.ok(receiver.requests[0].headers["hodei-delivery"]);
  });

  it("retries a failed request with exponential backoff (10 s, 20 s, 40 s ...) and delivers when answered 2xx", async () => {
    await driveJob(store, clock, "j", "ended", { spec: { notify: [URL_A] } });
    const failures: SendOutcome[] = [
      { status: 503, error: "", isRefused: false },
      { status: null, error: "ECONNREFUSED: connect ECONNREFUSED", isRefused: false },
      { status: 302, error: "", isRefused: false },
    ];
    receiver.answers = [...failures];
    const start = clock.nowMs();
    const expectedGapsMs = [10_000, 20_000, 40_000]; // random() = 1: the whole ceiling
    for (const [i, gap] of expectedGapsMs.entries()) {
      await step();
      const [row] = await deliveries();
      assert.equal(row.state, "pending");
      assert.equal(row.attempts, i + 1);
      assert.equal(row.next_attempt_at, clock.nowMs() + gap, `after failure ${i + 1}`);
      clock.advance(gap - 1);
      assert.equal(await step(), 0, "not before it is due");
      clock.advance(1);
    }
    const [failed] = await deliveries();
    assert.equal(failed.last_error, "answered HTTP 302 (only 2xx delivers)");
    assert.equal(await step(), 1);
    const [row] = await deliveries();
    assert.deepEqual([row.state, row.attempts, row.last_status, row.last_error], ["delivered", 4, 200, ""]);
    assert.deepEqual(receiver.requests.map((r) => r.atMs - start), [0, 10_000, 30_000, 70_000]);
    assert.equal(new Set(receiver.requests.map((r) => r.body)).size, 1, "the same body every time");
    assert.equal(await counted("retried"), 3);
  });

  it("gives up a day after the job ended, and sends nothing more", async () => {
    await driveJob(store, clock, "j", "ended", { spec: { notify: [URL_A] } });
    const endedAt = clock.nowMs();
    receiver.fallback = { status: 500, error: "", isRefused: false };
    for (let i = 0; i < 100; i++) {
      await step();
      const [row] = await deliveries();
      if (row.state !== "pending") break;
      clock.advance(row.next_attempt_at - clock.nowMs());
    }
    const [row] = await deliveries();
    assert.equal(row.state, "failed");
    const times = receiver.requests.map((r) => r.atMs - endedAt);
    assert.ok(times.at(-1)! <= DEFAULT_WEBHOOK_RETRY.giveUpAfterMs, "no request past the day");
    assert.ok(times.at(-1)! > DEFAULT_WEBHOOK_RETRY.giveUpAfterMs - DEFAULT_WEBHOOK_RETRY.capMs, "retried until near the end of the day");
    // 10 s doubling to the 1 h cap (9 requests reach it), then hourly: about 30 requests in a day.
    assert.equal(row.attempts, receiver.requests.length);
    assert.ok(row.attempts >= 25 && row.attempts <= 40, `${row.attempts} requests`);
    assert.equal(await counted("failed"), 1);
    clock.advance(7 * DEFAULT_WEBHOOK_RETRY.giveUpAfterMs);
    assert.equal(await step(), 0);
  });

  it("sends again, with the same delivery id and body, when the process died between the send and its record", async () => {
    await driveJob(store, clock, "j", "ended", { spec: { notify: [URL_A] } });
    const markDelivered = store.webhooks.markDelivered.bind(store.webhooks);
    store.webhooks.markDelivered = async () => {
      throw new Error("the process died here");
    };
    assert.equal(await step(), 1);
    assert.equal(receiver.requests.length, 1, "sent, answered 200, not recorded");
    store.webhooks.markDelivered = markDelivered;
    // A new leader (another dispatcher) finds it taken until the lease passes, then sends it again.
    const next = make();
    const [row] = await deliveries();
    assert.deepEqual([row.state, row.attempts, row.next_attempt_at], ["pending", 1, clock.nowMs() + LEASE_MS]);
    clock.advance(LEASE_MS - 1);
    assert.equal(await step(next), 0);
    clock.advance(1);
    assert.equal(await step(next), 1);
    assert.equal(receiver.requests.length, 2);
    assert.equal(receiver.requests[1].headers["hodei-delivery"], receiver.requests[0].headers["hodei-delivery"]);
    assert.equal(receiver.requests[1].body, receiver.requests[0].body);
    assert.deepEqual((await deliveries()).map((r) => [r.state, r.attempts]), [["delivered", 2]]);
  });

  it("keeps at most `concurrency` requests in flight and never waits for them", async () => {
    dispatcher = make({ concurrency: 2 });
    for (const id of ["a", "b", "c"]) await driveJob(store, clock, id, "ended", { spec: { notify: [URL_A] } });
    let release: () => void = () => {};
    const hanging = new Promise<SendOutcome>((resolve) => (release = () => resolve({ status: 200, error: "", isRefused: false })));
    receiver.answers = [() => hanging, () => hanging];
    assert.equal(await dispatcher.runOnce(), 2, "returns with both requests hanging");
    assert.equal(await dispatcher.runOnce(), 0, "no free slot");
    release();
    await dispatcher.settle();
    assert.equal(await step(), 1);
    const states = await Promise.all(["a", "b", "c"].map(async (id) => (await deliveries(id))[0].state));
    assert.deepEqual(states, ["delivered", "delivered", "delivered"]);
  });

  it("fails a URL refused by the address rule at once, without connecting", async () => {
    // Accepted at submit (a server that allowed private addresses then), refused at delivery by the real sender.
    const { workers } = await driveJob(store, clock, "j", "running");
    const { notify } = validateJobSpec({ command: ["true"], notify: ["http://169.254.169.254/latest/meta-data/"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"], isWebhookPrivateAllowed: true });
    await store.db.updateTable("jobs").set({ notify: JSON.stringify(notify) }).where("id", "=", "j").execute();
    assert.ok(await store.attempts.end(workers[0], "succeeded", clock.nowMs(), { exit_code: 0, finished_at: clock.nowMs() }, ""));
    dispatcher = new WebhookDispatcher({ store, clock, log, metrics, random: () => 1, settings: { secret: SECRET, isPrivateAllowed: false } });
    await step();
    const [row] = await deliveries();
    assert.equal(row.state, "failed");
    assert.match(row.last_error, /^refused: 169\.254\.169\.254 is a link-local \(cloud metadata\) address/);
  });

  it("leaves a request cut by a shutdown unrecorded, to be sent again after its lease", async () => {
    await driveJob(store, clock, "j", "ended", { spec: { notify: [URL_A] } });
    receiver.answers = [() => new Promise<SendOutcome>(() => {})];
    const aborting = new WebhookDispatcher({
      store, clock, log, metrics, random: () => 1,
      settings: { secret: SECRET, isPrivateAllowed: false, timeoutMs: TIMEOUT_MS, send: async (request, signal) => {
        receiver.requests.push({ ...request, atMs: clock.nowMs() });
        return new Promise<SendOutcome>((resolve) => signal?.addEventListener("abort", () => resolve({ status: null, error: "stopping", isRefused: false })));
      } },
    });
    assert.equal(await aborting.runOnce(), 1);
    await aborting.stop();
    assert.equal(await aborting.runOnce(), 0, "a stopped dispatcher starts nothing");
    const [row] = await deliveries();
    assert.deepEqual([row.state, row.attempts, row.last_error], ["pending", 1, ""]);
  });
});
