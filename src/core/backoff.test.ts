import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BACKOFF_CAP_MS,
  backoffCeilingMs,
  backoffMs,
  type CommandExit,
  decideAfterLoss,
  isRetryableExit,
  MAX_UNCOUNTED_ATTEMPTS,
  nextAfterLoss,
  PROVIDER_LOSS_DELAY_MS,
} from "./backoff.js";

const NOW = 1_700_000_000_000;
/** Fixed draws of the jitter: the smallest, the middle and the largest it can be. */
const LOW = () => 0;
const MID = () => 0.5;
const HIGH = () => 0.999_999_999;

describe("nextAfterLoss", () => {
  it("retries a failed attempt while attempts remain, after the backoff", () => {
    assert.deepEqual(nextAfterLoss(1, 3, false, NOW, HIGH), { retry: true, notBeforeMs: NOW + 999 });
    assert.deepEqual(nextAfterLoss(2, 3, false, NOW, LOW), { retry: true, notBeforeMs: NOW + 1000 });
  });

  it("gives up once the last attempt is lost, with no delay", () => {
    assert.deepEqual(nextAfterLoss(3, 3, false, NOW, MID), { retry: false, notBeforeMs: NOW });
    assert.deepEqual(nextAfterLoss(1, 1, false, NOW, MID), { retry: false, notBeforeMs: NOW });
  });

  it("never retries past maxAttempts, even if the count overshot", () => {
    assert.equal(nextAfterLoss(4, 3, false, NOW, MID).retry, false);
  });

  it("never retries a permanent failure, however many attempts remain", () => {
    assert.deepEqual(nextAfterLoss(1, 10, true, NOW, MID), { retry: false, notBeforeMs: NOW });
    assert.equal(nextAfterLoss(9, 10, true, NOW, MID).retry, false);
  });

  it("computes the delay from the time it is given, not the system clock", () => {
    assert.equal(nextAfterLoss(1, 3, false, 0, LOW).notBeforeMs, 500);
    assert.equal(nextAfterLoss(1, 3, false, 5, LOW).notBeforeMs, 505);
  });
});

describe("backoffCeilingMs", () => {
  it("doubles from one second with every attempt", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(backoffCeilingMs), [1000, 2000, 4000, 8000, 16_000, 32_000]);
  });

  it("grows until the cap and never shrinks", () => {
    let previous = 0;
    for (let attempt = 1; attempt <= 50; attempt++) {
      const ceiling = backoffCeilingMs(attempt);
      assert.ok(ceiling >= previous, `attempt ${attempt}: ${ceiling} < ${previous}`);
      previous = ceiling;
    }
  });

  it("is capped at 60 seconds", () => {
    assert.equal(BACKOFF_CAP_MS, 60_000);
    assert.equal(backoffCeilingMs(7), 60_000);
    assert.equal(backoffCeilingMs(100), 60_000);
    assert.equal(backoffCeilingMs(10_000), 60_000);
  });

  it("treats attempt 0 (or less) as the first", () => {
    assert.equal(backoffCeilingMs(0), 1000);
    assert.equal(backoffCeilingMs(-3), 1000);
  });
});

describe("backoffMs (equal jitter)", () => {
  it("is half the ceiling at the lowest draw and just under the ceiling at the highest", () => {
    assert.deepEqual([1, 2, 3, 7].map((a) => backoffMs(a, LOW)), [500, 1000, 2000, 30_000]);
    assert.deepEqual([1, 2, 3, 7].map((a) => backoffMs(a, HIGH)), [999, 1999, 3999, 59_999]);
    assert.deepEqual([1, 2, 3, 7].map((a) => backoffMs(a, MID)), [750, 1500, 3000, 45_000]);
  });

  it("stays within [ceiling / 2, ceiling] for every draw and attempt, and never passes the 60 s cap", () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = backoffCeilingMs(attempt);
      for (let i = 0; i <= 100; i++) {
        const delay = backoffMs(attempt, () => i / 100);
        assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt}, draw ${i / 100}: ${delay} outside [${ceiling / 2}, ${ceiling}]`);
        assert.ok(delay <= BACKOFF_CAP_MS);
      }
    }
  });

  it("spreads jobs that failed together: different draws give different delays", () => {
    const delays = new Set([0, 0.25, 0.5, 0.75].map((x) => backoffMs(4, () => x)));
    assert.equal(delays.size, 4);
  });

  it("keeps a draw outside [0, 1) (a broken source) within the bounds", () => {
    assert.equal(backoffMs(1, () => -5), 500);
    assert.equal(backoffMs(1, () => 7), 1000);
    assert.equal(backoffMs(1, () => Number.NaN), 500);
  });

  it("draws once per decision", () => {
    let draws = 0;
    nextAfterLoss(1, 3, false, NOW, () => {
      draws++;
      return 0.5;
    });
    assert.equal(draws, 1);
  });
});

describe("decideAfterLoss", () => {
  const base = { attempts: 1, uncountedAttempts: 0, maxAttempts: 1, nowMs: NOW, random: MID };

  it("fails a job whose only attempt was lost by its worker", () => {
    assert.deepEqual(decideAfterLoss({ ...base, kind: "infrastructure" }), { retry: false, notBeforeMs: NOW, isUncounted: false });
  });

  it("retries a disruption without counting it, even on the last attempt, after a fixed delay", () => {
    assert.deepEqual(decideAfterLoss({ ...base, kind: "disruption" }), { retry: true, notBeforeMs: NOW + PROVIDER_LOSS_DELAY_MS, isUncounted: true });
    assert.equal(decideAfterLoss({ ...base, kind: "disruption", random: HIGH }).notBeforeMs, NOW + PROVIDER_LOSS_DELAY_MS);
  });

  it("counts only the job's own attempts: attempt 3 after two provider losses is the first counted one", () => {
    const decision = decideAfterLoss({ ...base, attempts: 3, uncountedAttempts: 2, maxAttempts: 2, kind: "infrastructure", random: LOW });
    assert.deepEqual(decision, { retry: true, notBeforeMs: NOW + 500, isUncounted: false });
    assert.equal(decideAfterLoss({ ...base, attempts: 4, uncountedAttempts: 2, maxAttempts: 2, kind: "infrastructure" }).retry, false);
  });

  it("counts disruptions once a job has had MAX_UNCOUNTED_ATTEMPTS of them", () => {
    const decision = decideAfterLoss({ ...base, attempts: MAX_UNCOUNTED_ATTEMPTS + 1, uncountedAttempts: MAX_UNCOUNTED_ATTEMPTS, kind: "disruption" });
    assert.deepEqual(decision, { retry: false, notBeforeMs: NOW, isUncounted: false });
  });

  it("never retries a permanent failure", () => {
    assert.equal(decideAfterLoss({ ...base, maxAttempts: 5, kind: "permanent" }).retry, false);
  });

  it("counts an exit-code failure against maxAttempts like a lost worker, with the same jittered backoff", () => {
    for (const random of [LOW, MID, HIGH]) {
      const byExit = decideAfterLoss({ ...base, attempts: 2, maxAttempts: 3, kind: "exit_code", random });
      const byLoss = decideAfterLoss({ ...base, attempts: 2, maxAttempts: 3, kind: "infrastructure", random });
      assert.deepEqual(byExit, byLoss);
      assert.equal(byExit.retry, true);
      assert.ok(byExit.notBeforeMs >= NOW + 1000 && byExit.notBeforeMs <= NOW + 2000, String(byExit.notBeforeMs - NOW));
    }
    assert.deepEqual(decideAfterLoss({ ...base, attempts: 3, maxAttempts: 3, kind: "exit_code" }), { retry: false, notBeforeMs: NOW, isUncounted: false });
  });

  it("counts an exit-code failure after disruptions only once: uncounted attempts stay uncounted", () => {
    // Attempts 1 and 2 were disruptions; attempt 3 exited 3: the first counted attempt of 2 allowed.
    assert.equal(decideAfterLoss({ ...base, attempts: 3, uncountedAttempts: 2, maxAttempts: 2, kind: "exit_code" }).retry, true);
    assert.equal(decideAfterLoss({ ...base, attempts: 4, uncountedAttempts: 2, maxAttempts: 2, kind: "exit_code" }).retry, false);
  });
});

describe("isRetryableExit", () => {
  const exit = (overrides: Partial<CommandExit> = {}): CommandExit => ({ exitCode: 3, timedOut: false, canceled: false, interrupted: false, error: "", ...overrides });

  it("retries a listed exit code and no other", () => {
    assert.equal(isRetryableExit(exit({ exitCode: 3 }), "3,4"), true);
    assert.equal(isRetryableExit(exit({ exitCode: 4 }), "3,4"), true);
    assert.equal(isRetryableExit(exit({ exitCode: 5 }), "3,4"), false);
    assert.equal(isRetryableExit(exit({ exitCode: 34 }), "3,4"), false, "codes match whole, not as text");
    assert.equal(isRetryableExit(exit({ exitCode: 3 }), "13,30"), false);
  });

  it("retries every non-zero exit with any, a code killed by a signal included (128 + n)", () => {
    for (const exitCode of [1, 2, 127, 137, 255]) assert.equal(isRetryableExit(exit({ exitCode }), "any"), true, String(exitCode));
  });

  it("retries nothing when the job lists no codes", () => {
    assert.equal(isRetryableExit(exit({ exitCode: 1 }), ""), false);
  });

  it("never retries a success, a timeout, a cancel, an interrupted attempt or a command that did not run", () => {
    assert.equal(isRetryableExit(exit({ exitCode: 0 }), "any"), false);
    assert.equal(isRetryableExit(exit({ exitCode: -1 }), "any"), false);
    assert.equal(isRetryableExit(exit({ timedOut: true }), "any"), false);
    assert.equal(isRetryableExit(exit({ canceled: true }), "any"), false);
    assert.equal(isRetryableExit(exit({ interrupted: true, exitCode: 143 }), "any"), false);
    assert.equal(isRetryableExit(exit({ error: "sh: not found" }), "any"), false);
    assert.equal(isRetryableExit(exit({ timedOut: true, exitCode: 3 }), "3"), false);
  });
});
