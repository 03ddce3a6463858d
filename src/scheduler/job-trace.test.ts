/**
 * What JobTrace emits for attempts that did not run to the end (the phase they were cut short in,
 * as an error span ending when the attempt ended), what it skips, and that a failed read loses the
 * span with a log line instead of failing the step. A recording sink stands in for the SDK.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { jobSpanId, phaseSpanId } from "../core/trace-context.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import type { Store } from "../store/store.js";
import { JobTrace, NO_JOB_TRACE, type SpanRecord } from "./job-trace.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const job = { id: "job-1", trace_id: TRACE, trace_parent: "", created_at: 1000, state: "failed", attempts: 1, provider: "local", exit_code: null, reason: "lost", finished_at: 9000, updated_at: 9000 } as unknown as JobRow;
const worker = (fields: Partial<WorkerRow>) =>
  ({ id: "w1", job_id: "job-1", attempt: 1, provider: "local", provider_resource_id: null, created_at: 2000, provisioned_at: null, registered_at: null, started_at: null, finished_at: 5000, destroyed_at: 6000, failure_reason: "", exit_code: null, ...fields }) as WorkerRow;

function recording(getJob: () => Promise<JobRow | undefined> = () => Promise.resolve(job)) {
  const spans: SpanRecord[] = [];
  const lines: string[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(line) });
  const store = { jobs: { get: getJob }, workers: { listOfJob: () => Promise.resolve([]) } } as unknown as Store;
  const trace = new JobTrace({ record: (s) => void spans.push(s), close: () => Promise.resolve() }, { store, log });
  return { trace, spans, lines };
}

describe("JobTrace", () => {
  it("emits a start that never returned as a provision error span, then the destroy", async () => {
    const { trace, spans } = recording();
    trace.destroyed(worker({ failure_reason: "could not start the worker on local: boom" }));
    await trace.settle();
    assert.deepEqual(spans.map((s) => s.name), ["provision", "destroy"]);
    assert.deepEqual([spans[0].startMs, spans[0].endMs], [2000, 5000]);
    assert.match(spans[0].error!, /never provisioned: could not start the worker on local: boom/);
    assert.equal(spans[0].spanId, phaseSpanId("job-1", 1, "provision"));
    assert.equal(spans[0].parent?.spanId, jobSpanId("job-1"));
    assert.deepEqual([spans[1].startMs, spans[1].endMs, spans[1].error], [5000, 6000, undefined]);
  });

  it("emits a worker that never registered as a register error span", async () => {
    const { trace, spans } = recording();
    trace.destroyed(worker({ provisioned_at: 3000, failure_reason: "the worker did not register within 30s" }));
    await trace.settle();
    assert.deepEqual(spans.map((s) => [s.name, s.startMs, s.endMs]), [["register", 3000, 5000], ["destroy", 5000, 6000]]);
    assert.match(spans[0].error!, /never registered/);
  });

  it("records nothing for a job without a trace, and skips routine inspections", async () => {
    const { trace, spans } = recording(() => Promise.resolve({ ...job, trace_id: "" }));
    trace.destroyed(worker({}));
    trace.jobEnded({ ...job, trace_id: "" });
    await trace.settle();
    assert.deepEqual(spans, []);
    const traced = recording();
    traced.trace.providerCall(worker({}), "inspect", 1, 2, { result: { state: "running" } });
    traced.trace.providerCall(worker({}), "inspect", 1, 2, { result: { state: "exited", exitCode: 1 } });
    await traced.trace.settle();
    assert.deepEqual(traced.spans.map((s) => [s.name, s.parent?.spanId]), [["provider inspect", jobSpanId("job-1")]]);
  });

  it("loses the span with a log line, never an error, when the job cannot be read", async () => {
    const { trace, spans, lines } = recording(() => Promise.reject(new Error("database is locked")));
    trace.registered(worker({ provisioned_at: 3000, registered_at: 4000 }));
    await trace.settle();
    assert.deepEqual(spans, []);
    assert.ok(lines.some((l) => l.includes("could not record a job's trace span") && l.includes("database is locked")));
  });

  it("is a no-op when off", async () => {
    assert.equal(NO_JOB_TRACE.isRecording, false);
    NO_JOB_TRACE.destroyed(worker({}));
    NO_JOB_TRACE.jobEnded(job);
    await NO_JOB_TRACE.close();
  });
});
