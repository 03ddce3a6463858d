import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "./errors.js";
import { validateJobSpec } from "./job-spec.js";
import { specHash } from "./spec-hash.js";
import {
  commandTraceparent,
  formatTraceparent,
  jobSpanId,
  MAX_TRACEPARENT_CHARS,
  parseTraceparent,
  phaseSpanId,
  shownTraceId,
  traceOfNewJob,
} from "./trace-context.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";
const GOOD = `00-${TRACE}-${SPAN}-01`;

describe("parseTraceparent", () => {
  it("reads a W3C traceparent", () => {
    assert.deepEqual(parseTraceparent(GOOD), { traceId: TRACE, spanId: SPAN, flags: 1 });
    assert.equal(formatTraceparent(parseTraceparent(GOOD)), GOOD);
    assert.equal(parseTraceparent(`00-${TRACE}-${SPAN}-00`).flags, 0);
  });

  it("reads the known fields of a later version and ignores what follows them", () => {
    assert.deepEqual(parseTraceparent(`01-${TRACE}-${SPAN}-01-what-comes-later`), { traceId: TRACE, spanId: SPAN, flags: 1 });
  });

  it("refuses anything else with a message naming the field", () => {
    const bad = [
      "",
      "hello",
      GOOD.toUpperCase(),
      `${GOOD}-extra`, // version 00 has exactly four fields
      `ff-${TRACE}-${SPAN}-01`,
      `00-${"0".repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${"0".repeat(16)}-01`,
      `00-${TRACE.slice(1)}x-${SPAN}-01`,
      `00_${TRACE}_${SPAN}_01`,
      `00-${TRACE}-${SPAN}-1`,
      `0-${TRACE}-${SPAN}-01`,
      `00-${TRACE}-${SPAN}-0g`,
      `01-${TRACE}-${SPAN}-01x`,
      " " + GOOD,
    ];
    for (const text of bad) {
      assert.throws(
        () => parseTraceparent(text, "traceparent"),
        (err: unknown) => err instanceof InvalidInputError && err.message.startsWith("traceparent: ") && err.message.includes("W3C traceparent"),
        JSON.stringify(text),
      );
    }
  });

  it("refuses a huge value without echoing it", () => {
    const huge = `01-${TRACE}-${SPAN}-01-${"a".repeat(1_000_000)}`;
    assert.throws(() => parseTraceparent(huge), (err: unknown) => err instanceof InvalidInputError && err.message.length < 300 && err.message.includes(`at most ${MAX_TRACEPARENT_CHARS}`));
  });
});

describe("a job's trace", () => {
  it("is the caller's trace when one is given, and a new one only when spans are recorded", () => {
    const caller = parseTraceparent(GOOD);
    assert.deepEqual(traceOfNewJob(caller, true), { traceId: TRACE, traceParent: GOOD });
    assert.deepEqual(traceOfNewJob(caller, false), { traceId: "", traceParent: GOOD });
    assert.deepEqual(traceOfNewJob(null, false), { traceId: "", traceParent: "" });
    const fresh = traceOfNewJob(null, true);
    assert.match(fresh.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(fresh.traceId, traceOfNewJob(null, true).traceId);
  });

  it("has span ids derived from the job, so every replica emits under the same parent", () => {
    assert.match(jobSpanId("j1"), /^[0-9a-f]{16}$/);
    assert.equal(jobSpanId("j1"), jobSpanId("j1"));
    assert.notEqual(jobSpanId("j1"), jobSpanId("j2"));
    const ids = new Set(["queued", "provision", "register", "run", "destroy"].flatMap((p) => [1, 2].map((a) => phaseSpanId("j1", a, p as "run"))));
    assert.equal(ids.size, 10);
  });

  it("gives the command the attempt's run span when spans are recorded, else the caller's traceparent, else nothing", () => {
    const recorded = { id: "j1", trace_id: TRACE, trace_parent: GOOD };
    assert.equal(commandTraceparent(recorded, 2), `00-${TRACE}-${phaseSpanId("j1", 2, "run")}-01`);
    // The caller's sampling decision is passed on.
    assert.equal(commandTraceparent({ ...recorded, trace_parent: `00-${TRACE}-${SPAN}-00` }, 1).slice(-3), "-00");
    assert.equal(commandTraceparent({ id: "j1", trace_id: "", trace_parent: GOOD }, 1), GOOD);
    assert.equal(commandTraceparent({ id: "j1", trace_id: "", trace_parent: "" }, 1), "");
    assert.equal(shownTraceId({ id: "j1", trace_id: "", trace_parent: GOOD }), TRACE);
    assert.equal(shownTraceId({ id: "j1", trace_id: "", trace_parent: "" }), "");
  });

  it("is not part of the spec's hash: a retried submit from a new span is the same spec", () => {
    const spec = (traceParent: string) => ({ ...validateJobSpec({ command: ["true"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"] }), trace: { traceId: TRACE, traceParent } });
    assert.equal(specHash(spec(GOOD)), specHash(spec(`00-${TRACE}-${"1".repeat(16)}-01`)));
  });
});
