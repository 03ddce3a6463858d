/**
 * ProviderCalls: slow calls (start, stop) never hold the quick ones a pass waits for, waiting for a
 * slot is bounded, and a provider marked unavailable fails calls before they queue. Time is a
 * ManualClock; a hung call is a promise that never settles.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { UnavailableError } from "../core/errors.js";
import type { ProviderSlot } from "./context.js";
import { ProviderCalls } from "./provider-calls.js";
import { ProviderHealth } from "./provider-health.js";

const hang = () => new Promise<never>(() => {});
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function setUp(concurrency = 2) {
  const clock = new ManualClock();
  const health = new ProviderHealth(new Map<string, ProviderSlot>(), clock, pino({ level: "silent" }));
  return { clock, health, calls: new ProviderCalls(health, clock, concurrency) };
}

describe("ProviderCalls", () => {
  it("runs a quick call at once while every slow slot is held by a stop that hangs", async () => {
    const { calls } = setUp(2);
    for (let i = 0; i < 2; i++) void calls.run("p", "stop", 60_000, hang).catch(() => {});
    await settle();
    assert.equal(await calls.run("p", "inspect", 10_000, async () => "running"), "running");
  });

  it("gives up waiting for a slot after the call's time limit, without marking the provider unavailable", async () => {
    const { clock, health, calls } = setUp(2);
    for (let i = 0; i < 2; i++) void calls.run("p", "stop", 60_000, hang).catch(() => {});
    await settle();
    let started = false;
    const waiting = calls.run("p", "stop", 10_000, async () => {
      started = true;
    });
    clock.advance(10_000);
    await assert.rejects(waiting, (err: Error) => !(err instanceof UnavailableError) && /p stop: no free call slot within 10000 ms/.test(err.message));
    assert.equal(started, false);
    assert.equal(health.isMarkedUnavailable("p"), false);
  });

  it("passes a freed slot to the next waiter, which runs with its own full time limit", async () => {
    const { clock, calls } = setUp(1);
    let finish!: () => void;
    const first = calls.run("p", "inspect", 10_000, () => new Promise<void>((r) => (finish = r)));
    await settle();
    let abortedAfter = -1;
    const startMs = clock.nowMs();
    const second = calls.run("p", "inspect", 10_000, (signal) => {
      const began = clock.nowMs();
      return new Promise((_, reject) => signal.addEventListener("abort", () => ((abortedAfter = clock.nowMs() - began), reject(signal.reason))));
    });
    clock.advance(9_000);
    finish();
    await first;
    await settle();
    clock.advance(9_999);
    await settle();
    assert.equal(abortedAfter, -1, "not aborted before its own 10 s");
    clock.advance(1);
    await assert.rejects(second, UnavailableError);
    assert.equal(abortedAfter, 10_000);
    assert.equal(clock.nowMs() - startMs, 19_000, "9 s waiting for the slot, then 10 s of its own");
  });

  it("fails a call to a provider marked unavailable at once, even while its lane is full", async () => {
    const { health, calls } = setUp(1);
    void calls.run("p", "inspect", 10_000, hang).catch(() => {});
    await settle();
    health.markUnhealthy("p", "daemon not answering");
    await assert.rejects(calls.run("p", "inspect", 10_000, async () => "x"), (err: Error) => err instanceof UnavailableError && /the provider is unavailable/.test(err.message));
  });
});
