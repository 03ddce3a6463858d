import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffMs, decideAfterLoss, MAX_UNCOUNTED_ATTEMPTS, nextAfterLoss, PROVIDER_LOSS_DELAY_MS } from "./backoff.js";

const NOW = 1_700_000_000_000;

describe("nextAfterLoss", () => {
  it("retries a lost attempt while attempts remain, after the backoff", () => {
    assert.deepEqual(nextAfterLoss(1, 3, false, NOW), { retry: true, notBeforeMs: NOW + 1000 });
    assert.deepEqual(nextAfterLoss(2, 3, false, NOW), { retry: true, notBeforeMs: NOW + 2000 });
  });

  it("gives up once the last attempt is lost, with no delay", () => {
    assert.deepEqual(nextAfterLoss(3, 3, false, NOW), { retry: false, notBeforeMs: NOW });
    assert.deepEqual(nextAfterLoss(1, 1, false, NOW), { retry: false, notBeforeMs: NOW });
  });

  it("never retries past maxAttempts, even if the count overshot", () => {
    assert.equal(nextAfterLoss(4, 3, false, NOW).retry, false);
  });

  it("never retries a permanent failure, however many attempts remain", () => {
    assert.deepEqual(nextAfterLoss(1, 10, true, NOW), { retry: false, notBeforeMs: NOW });
    assert.equal(nextAfterLoss(9, 10, true, NOW).retry, false);
  });

  it("computes the delay from the time it is given, not the system clock", () => {
    assert.equal(nextAfterLoss(1, 3, false, 0).notBeforeMs, 1000);
    assert.equal(nextAfterLoss(1, 3, false, 5).notBeforeMs, 1005);
  });
});

describe("backoffMs", () => {
  it("doubles from one second with every attempt", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(backoffMs), [1000, 2000, 4000, 8000, 16_000, 32_000]);
  });

  it("grows until the cap and never shrinks", () => {
    let previous = 0;
    for (let attempt = 1; attempt <= 50; attempt++) {
      const delay = backoffMs(attempt);
      assert.ok(delay >= previous, `attempt ${attempt}: ${delay} < ${previous}`);
      previous = delay;
    }
  });

  it("is capped at 60 seconds", () => {
    assert.equal(backoffMs(7), 60_000);
    assert.equal(backoffMs(100), 60_000);
    assert.equal(backoffMs(10_000), 60_000);
    assert.equal(nextAfterLoss(9, 10, false, NOW).notBeforeMs, NOW + 60_000);
  });

  it("treats attempt 0 (or less) as the first", () => {
    assert.equal(backoffMs(0), 1000);
    assert.equal(backoffMs(-3), 1000);
  });
});

describe("decideAfterLoss", () => {
  const base = { attempts: 1, uncountedAttempts: 0, maxAttempts: 1, nowMs: NOW };

  it("fails a job whose only attempt was lost by its worker", () => {
    assert.deepEqual(decideAfterLoss({ ...base, kind: "infrastructure" }), { retry: false, notBeforeMs: NOW, isUncounted: false });
  });

  it("retries a disruption without counting it, even on the last attempt", () => {
    assert.deepEqual(decideAfterLoss({ ...base, kind: "disruption" }), { retry: true, notBeforeMs: NOW + PROVIDER_LOSS_DELAY_MS, isUncounted: true });
  });

  it("counts only the job's own attempts: attempt 3 after two provider losses is the first counted one", () => {
    const decision = decideAfterLoss({ attempts: 3, uncountedAttempts: 2, maxAttempts: 2, kind: "infrastructure", nowMs: NOW });
    assert.deepEqual(decision, { retry: true, notBeforeMs: NOW + 1000, isUncounted: false });
    assert.equal(decideAfterLoss({ attempts: 4, uncountedAttempts: 2, maxAttempts: 2, kind: "infrastructure", nowMs: NOW }).retry, false);
  });

  it("counts disruptions once a job has had MAX_UNCOUNTED_ATTEMPTS of them", () => {
    const decision = decideAfterLoss({ attempts: MAX_UNCOUNTED_ATTEMPTS + 1, uncountedAttempts: MAX_UNCOUNTED_ATTEMPTS, maxAttempts: 1, kind: "disruption", nowMs: NOW });
    assert.deepEqual(decision, { retry: false, notBeforeMs: NOW, isUncounted: false });
  });

  it("never retries a permanent failure", () => {
    assert.equal(decideAfterLoss({ ...base, maxAttempts: 5, kind: "permanent" }).retry, false);
  });
});
