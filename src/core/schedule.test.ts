import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "./errors.js";
import { cronOf, MAX_TICKS_PER_PASS, planTicks, SCHEDULE_LIMITS, tickKey, validateSchedule } from "./schedule.js";

function refusal(input: Parameters<typeof validateSchedule>[0]): InvalidInputError {
  try {
    validateSchedule(input);
  } catch (err) {
    assert.ok(err instanceof InvalidInputError);
    return err;
  }
  assert.fail("accepted");
}

describe("validateSchedule", () => {
  it("normalises a valid schedule with its defaults: UTC, skip, allow", () => {
    assert.deepEqual(validateSchedule({ name: "nightly-backup", cron: "  0  3 * * *  " }), {
      name: "nightly-backup",
      cron: "0 3 * * *",
      timezone: "",
      missed: "skip",
      concurrency: "allow",
    });
    assert.equal(validateSchedule({ name: "s", cron: "*/10 * * * * *", timezone: "Europe/Madrid", missed: "run-once", concurrency: "forbid" }).timezone, "Europe/Madrid");
    assert.equal(validateSchedule({ name: "d", cron: "@daily" }).cron, "@daily");
  });

  it("refuses each bad field with an error that names it", () => {
    const cases: [Parameters<typeof validateSchedule>[0], string, RegExp][] = [
      [{ name: "", cron: "* * * * *" }, "name", /required/],
      [{ name: "Nightly", cron: "* * * * *" }, "name", /lowercase letters, digits and -/],
      [{ name: "-x", cron: "* * * * *" }, "name", /starting and ending/],
      [{ name: "a_b", cron: "* * * * *" }, "name", /not a schedule name/],
      [{ name: "x".repeat(64), cron: "* * * * *" }, "name", /at most 63 characters \(got 64\)/],
      [{ name: "x", cron: "" }, "cron", /required: 5 fields/],
      [{ name: "x", cron: "* * * *" }, "cron", /not a cron expression/],
      [{ name: "x", cron: "* * * * * * *" }, "cron", /5 or 6 parts/],
      [{ name: "x", cron: "61 * * * *" }, "cron", /Invalid value for minute/],
      [{ name: "x", cron: "0 0 31 2 *" }, "cron", /never matches a time/],
      [{ name: "x", cron: "* ".repeat(5000) }, "cron", /at most 200 characters/],
      [{ name: "x", cron: "* * * * *", timezone: "Mars/Olympus" }, "timezone", /not an IANA time zone name/],
      [{ name: "x", cron: "* * * * *", timezone: "x".repeat(65) }, "timezone", /at most 64/],
      [{ name: "x", cron: "* * * * *", missed: "all" }, "missed", /use skip or run-once/],
      [{ name: "x", cron: "* * * * *", concurrency: "replace" }, "concurrency", /use allow or forbid/],
    ];
    for (const [input, field, message] of cases) {
      const err = refusal(input);
      assert.equal(err.field, field, JSON.stringify(input).slice(0, 80));
      assert.match(err.message, new RegExp(`^${field}: `));
      assert.match(err.message, message);
    }
    assert.equal(SCHEDULE_LIMITS.nameChars, 63);
  });
});

describe("planTicks", () => {
  const at = (iso: string) => Date.parse(iso);
  const minutely = cronOf("* * * * *", "");

  it("fires nothing before the next tick", () => {
    assert.deepEqual(planTicks(minutely, at("2026-01-01T00:01:00Z"), at("2026-01-01T00:00:59Z"), 30_000, "skip"), {
      fire: [],
      skippedMissedMs: null,
      nextRunAtMs: at("2026-01-01T00:01:00Z"),
    });
  });

  it("a tick exactly at the grace is on time; one a millisecond older is missed", () => {
    const now = at("2026-01-01T00:01:30Z");
    assert.deepEqual(planTicks(minutely, at("2026-01-01T00:01:00Z"), now, 30_000, "skip").fire, [at("2026-01-01T00:01:00Z")]);
    const plan = planTicks(minutely, at("2026-01-01T00:01:00Z"), now + 1, 30_000, "skip");
    assert.deepEqual(plan.fire, []);
    assert.equal(plan.skippedMissedMs, at("2026-01-01T00:01:00Z"));
    assert.equal(plan.nextRunAtMs, at("2026-01-01T00:02:00Z"));
    assert.deepEqual(planTicks(minutely, at("2026-01-01T00:01:00Z"), now + 1, 30_000, "run-once").fire, [at("2026-01-01T00:01:00Z")]);
  });

  it("caps the on-time ticks of one pass and resumes from the first left", () => {
    const seconds = cronOf("* * * * * *", "");
    const plan = planTicks(seconds, at("2026-01-01T00:00:01Z"), at("2026-01-01T00:00:20Z"), 30_000, "skip");
    assert.equal(plan.fire.length, MAX_TICKS_PER_PASS);
    assert.equal(plan.nextRunAtMs, at("2026-01-01T00:00:01Z") + MAX_TICKS_PER_PASS * 1000);
  });

  it("names each tick's job by the schedule and the tick, in UTC", () => {
    assert.equal(tickKey("backup", at("2026-03-29T01:00:00Z")), "schedule:backup:2026-03-29T01:00:00.000Z");
  });
});
