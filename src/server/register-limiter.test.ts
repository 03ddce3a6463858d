/**
 * Refused Register calls cost their address time, and nothing else: through the real worker
 * service (gRPC over HTTP/2 on a real store, client addresses 127.0.0.x), then the limiter alone.
 * Time is a ManualClock: a delayed refusal is answered when the test advances the clock past it.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { afterEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { startWorkerProtocol, type LogLine, REGISTER_LIMITS, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { ManualClock } from "../core/clock.js";
import { mintOtpToken } from "../core/token.js";
import { type RegisterLimits, RegisterLimiter } from "./register-limiter.js";

const LINE = "register calls refused for their OTP token from one address";
const FORGOTTEN_LINE = /more addresses than are tracked/;

/** Resolves once `condition` holds, letting I/O run between looks; fails after 120 s of real time (a guard, not a timing). */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

type Outcome = "registered" | Code;

/** A Register call whose outcome can be looked at before it settles. */
function call(client: WorkerProtocol["client"], otpToken = mintOtpToken()) {
  const c: { outcome: Outcome | null; done: Promise<Outcome> } = { outcome: null, done: Promise.resolve("registered") };
  c.done = client.register({ otpToken, hostname: "h", agentVersion: "test", instanceKey: "k" }).then(
    (): Outcome => (c.outcome = "registered"),
    (err: unknown): Outcome => (c.outcome = ConnectError.from(err).code),
  );
  return c;
}

const refusalLines = (lines: LogLine[], address?: string) => lines.filter((l) => l.msg === LINE && (address === undefined || l.clientAddress === address));

describe("refused Register calls, through the worker service", () => {
  let p: WorkerProtocol;
  afterEach(async () => {
    await p.close();
  });

  it("holds or refuses at once 2,000 wrong tokens sent together from one address, while a valid token from it registers at once and another address is unaffected", async () => {
    p = await startWorkerProtocol({ registerLimits: REGISTER_LIMITS });
    const burst = Array.from({ length: 2000 }, () => call(p.client));
    const { freeFailures, maxPendingPerAddress } = REGISTER_LIMITS;
    await until(() => burst.filter((c) => c.outcome !== null).length === 2000 - maxPendingPerAddress, "all but the held refusals are answered");
    assert.equal(p.registerLimiter.pendingRefusals("127.0.0.1"), maxPendingPerAddress, "the held ones wait for the clock");
    const outcomes = (wanted: Outcome) => burst.filter((c) => c.outcome === wanted).length;
    assert.equal(outcomes(Code.Unauthenticated), freeFailures, "the first ones are answered at once");
    assert.equal(outcomes(Code.ResourceExhausted), 2000 - freeFailures - maxPendingPerAddress, "the rest are not held");

    // During the burst, with its refusals still held and the clock not moved: a real worker on 127.0.0.1.
    const worker = await p.provision();
    const res = await p.client.register({ otpToken: worker.otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
    assert.equal(res.workerId, worker.worker.id);
    assert.equal((await p.store.workers.get(worker.worker.id))?.state, "registered");

    // Another address: its own wrong token is refused at once, its valid one registers at once.
    const other = p.clientFrom("127.0.0.2");
    const wrong = call(other);
    assert.equal(await wrong.done, Code.Unauthenticated);
    assert.equal(p.registerLimiter.pendingRefusals("127.0.0.2"), 0);
    const second = await p.provision();
    assert.equal((await other.register({ otpToken: second.otp, hostname: "h", agentVersion: "test", instanceKey: "k" })).workerId, second.worker.id);

    // The held refusals: 250, 500, 1000, 2000, 4000, 8000, then the 10 s maximum twice.
    p.clock.advance(9_999);
    assert.equal(p.registerLimiter.pendingRefusals("127.0.0.1"), 2);
    p.clock.advance(1);
    assert.equal(p.registerLimiter.pendingRefusals("127.0.0.1"), 0);
    assert.deepEqual(new Set(await Promise.all(burst.map((c) => c.done))), new Set([Code.Unauthenticated, Code.ResourceExhausted]));
    assert.equal(outcomes(Code.Unauthenticated), freeFailures + maxPendingPerAddress);

    // One warn line per address for the window, with the count, when the window ends.
    assert.deepEqual(refusalLines(p.lines), [], "nothing is logged per call");
    p.clock.advance(REGISTER_LIMITS.windowMs);
    const [line, ...more] = refusalLines(p.lines, "127.0.0.1");
    assert.deepEqual(more, []);
    assert.equal(line.level, 40, "warn");
    assert.equal(line.failures, 2000);
    assert.equal(line.delayed, maxPendingPerAddress);
    assert.equal(line.exhausted, 2000 - freeFailures - maxPendingPerAddress);
    assert.equal(refusalLines(p.lines, "127.0.0.2")[0]?.failures, 1);
    assert.equal(refusalLines(p.lines).length, 2);
    assert.equal(p.registerLimiter.addressCount, 0, "nothing is kept once the window ended");
  });

  it("makes 2,000 wrong tokens sent one after another from one address take well over an hour, logging one line per window", async () => {
    p = await startWorkerProtocol({ registerLimits: REGISTER_LIMITS });
    const start = p.clock.nowMs();
    let atOnce = 0;
    for (let i = 0; i < 2000; i++) {
      const c = call(p.client);
      await until(() => c.outcome !== null || p.registerLimiter.pendingRefusals("127.0.0.1") === 1, "the refusal is answered or held");
      if (c.outcome !== null) atOnce++;
      // Delays are multiples of 250 ms: move the clock to the very step that answers this one.
      while (p.registerLimiter.pendingRefusals("127.0.0.1") === 1) p.clock.advance(250);
      assert.equal(await c.done, Code.Unauthenticated, `call ${i + 1} is refused for its token, never for its address`);
    }
    const elapsedMs = p.clock.nowMs() - start;
    assert.ok(elapsedMs > 90 * 60_000, `the attacker waited ${elapsedMs / 60_000} min`);
    const windows = Math.ceil(elapsedMs / REGISTER_LIMITS.windowMs) + 1;
    assert.ok(atOnce <= windows * REGISTER_LIMITS.freeFailures, `${atOnce} answered at once in ${windows} windows`);

    p.clock.advance(REGISTER_LIMITS.windowMs);
    const lines = refusalLines(p.lines, "127.0.0.1");
    assert.ok(lines.length <= windows, `${lines.length} lines for ${windows} windows`);
    assert.equal(
      lines.reduce((sum, l) => sum + Number(l.failures), 0),
      2000,
      "the lines add up to every failure",
    );
  });

  it("keeps at most HODEI_REGISTER_MAX_ADDRESSES addresses, saying how many it forgot", async () => {
    p = await startWorkerProtocol({ registerLimits: { ...REGISTER_LIMITS, maxAddresses: 4 } });
    for (let i = 10; i < 22; i++) {
      assert.equal(await call(p.clientFrom(`127.0.0.${i}`)).done, Code.Unauthenticated);
      assert.ok(p.registerLimiter.addressCount <= 4, `${p.registerLimiter.addressCount} addresses tracked`);
    }
    p.clock.advance(REGISTER_LIMITS.windowMs);
    assert.equal(p.registerLimiter.addressCount, 0);
    assert.deepEqual(
      refusalLines(p.lines).map((l) => l.clientAddress),
      ["127.0.0.18", "127.0.0.19", "127.0.0.20", "127.0.0.21"],
      "the last four addresses are reported",
    );
    const forgotten = p.lines.filter((l) => FORGOTTEN_LINE.test(l.msg));
    assert.equal(forgotten.length, 1);
    assert.equal(forgotten[0].forgottenAddresses, 8);
  });

  it("does not count a Register that waits for its provider_resource_id: its token is valid", async () => {
    p = await startWorkerProtocol({ registerLimits: { ...REGISTER_LIMITS, freeFailures: 0 } });
    const { otp } = await p.provision({ recordResource: false });
    for (let i = 0; i < 5; i++) {
      const c = call(p.client, otp);
      await until(() => c.outcome !== null || p.registerLimiter.pendingRefusals("127.0.0.1") > 0, "the call is answered or held");
      assert.equal(c.outcome, Code.Unavailable, "answered at once: retry shortly");
    }
    assert.equal(p.registerLimiter.addressCount, 0);
    const wrong = call(p.client);
    await until(() => wrong.outcome !== null || p.registerLimiter.pendingRefusals("127.0.0.1") > 0, "the call is answered or held");
    assert.equal(wrong.outcome, null, "whereas a wrong token is held: the limiter is on");
    p.clock.advance(REGISTER_LIMITS.baseDelayMs);
    assert.equal(await wrong.done, Code.Unauthenticated);
  });
});

describe("RegisterLimiter", () => {
  const limits: RegisterLimits = { freeFailures: 2, baseDelayMs: 100, maxDelayMs: 1000, windowMs: 10_000, maxPendingPerAddress: 3, maxAddresses: 100 };

  function setup(overrides: Partial<RegisterLimits> = {}) {
    const lines: LogLine[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
        done();
      },
    });
    const clock = new ManualClock();
    const limiter = new RegisterLimiter({ ...limits, ...overrides }, clock, pino({ level: "info" }, sink));
    /** Starts a refusal; `answered` turns true (or "exhausted") once it may be answered. */
    const refuse = (address: string) => {
      const r: { answered: boolean | "exhausted" } = { answered: false };
      limiter.refuse(address).then(
        () => (r.answered = true),
        (err: unknown) => (r.answered = ConnectError.from(err).code === Code.ResourceExhausted ? "exhausted" : assert.fail(String(err))),
      );
      return r;
    };
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    return { lines, clock, limiter, refuse, settle };
  }

  it("answers the free failures at once, then doubles the delay up to its maximum", () => {
    const { limiter } = setup();
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 100, 100_000].map((n) => limiter.delayMs(n)),
      [0, 0, 100, 200, 400, 800, 1000, 1000, 1000, 1000],
    );
  });

  it("answers a delayed refusal exactly when its delay has passed", async () => {
    const { clock, limiter, refuse, settle } = setup();
    refuse("a");
    refuse("a");
    const third = refuse("a");
    await settle();
    assert.equal(third.answered, false);
    clock.advance(99);
    await settle();
    assert.equal(third.answered, false);
    clock.advance(1);
    await settle();
    assert.equal(third.answered, true);
    assert.equal(limiter.pendingRefusals("a"), 0);
  });

  it("refuses at once with resource_exhausted beyond the pending bound of an address, and only of that address", async () => {
    const { limiter, refuse, settle } = setup();
    for (let i = 0; i < 2 + 3; i++) refuse("a");
    const over = refuse("a");
    const b = refuse("b");
    await settle();
    assert.equal(over.answered, "exhausted");
    assert.equal(b.answered, true);
    assert.equal(limiter.pendingRefusals("a"), 3);
  });

  it("starts counting again after a window, with one line per window", async () => {
    const { clock, lines, refuse, settle } = setup();
    refuse("a");
    refuse("a");
    clock.advance(limits.windowMs);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].failures, 2);
    const again = refuse("a");
    await settle();
    assert.equal(again.answered, true, "a free failure again in the new window");
    clock.advance(limits.windowMs);
    assert.equal(lines.length, 2);
    assert.equal(lines[1].failures, 1);
  });

  it("keeps an address whose refusals still wait past its window, and forgets it once they are answered", async () => {
    const { clock, limiter, refuse, settle } = setup({ maxDelayMs: 20_000, baseDelayMs: 20_000 });
    refuse("a");
    refuse("a");
    const held = refuse("a");
    clock.advance(limits.windowMs);
    assert.equal(limiter.addressCount, 1);
    assert.equal(limiter.pendingRefusals("a"), 1);
    clock.advance(20_000 - limits.windowMs);
    await settle();
    assert.equal(held.answered, true);
    clock.advance(limits.windowMs);
    assert.equal(limiter.addressCount, 0);
    assert.equal(clock.pendingTimers, 0, "no timer is left");
  });

  it("stays within maxAddresses for 100,000 addresses and leaves nothing behind after the window", () => {
    const { clock, limiter, lines, refuse } = setup({ maxAddresses: 1000 });
    let most = 0;
    for (let i = 0; i < 100_000; i++) {
      refuse(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      most = Math.max(most, limiter.addressCount);
    }
    assert.equal(most, 1000);
    assert.ok(clock.pendingTimers <= 1, "one sweep timer, no timer per address");
    clock.advance(limits.windowMs);
    assert.equal(limiter.addressCount, 0);
    assert.equal(clock.pendingTimers, 0);
    assert.equal(lines.filter((l) => l.msg === LINE).length, 1000, "one line per tracked address");
    assert.equal(lines.find((l) => FORGOTTEN_LINE.test(l.msg))?.forgottenAddresses, 99_000);
  });

  it("answers every waiting refusal at close and logs the windows in progress", async () => {
    const { clock, limiter, lines, refuse, settle } = setup();
    refuse("a");
    refuse("a");
    const held = refuse("a");
    limiter.close();
    await settle();
    assert.equal(held.answered, true);
    assert.equal(clock.pendingTimers, 0);
    assert.equal(lines[0].clientAddress, "a");
    assert.equal(lines[0].failures, 3);
  });
});
