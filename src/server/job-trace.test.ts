/**
 * Job traces through a real server in this process, spans recorded by an in-memory exporter
 * (InMemorySpanExporter behind a SimpleSpanProcessor, injected with ServerHooks.spanProcessor):
 * a job run on the local provider makes one trace under the caller's span, with a span per phase
 * and per provider call, and its command sees TRACEPARENT in that trace.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Context } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { phaseSpanId } from "../core/trace-context.js";
import { type InProcessServer, logText, startInProcessServer } from "../../test/fixtures/in-process-server.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";
const PHASES = ["queued", "provision", "register", "run", "destroy"];

/** SimpleSpanProcessor over the in-memory exporter, telling waiters of every span that ends. */
class WatchedProcessor implements SpanProcessor {
  private readonly inner: SimpleSpanProcessor;
  private waiters: (() => void)[] = [];
  constructor(readonly exporter: InMemorySpanExporter) {
    this.inner = new SimpleSpanProcessor(exporter);
  }
  onStart(span: Span, context: Context): void {
    this.inner.onStart(span, context);
  }
  onEnd(span: ReadableSpan): void {
    this.inner.onEnd(span);
    for (const wake of this.waiters.splice(0)) wake();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  /** The spans of `traceId` once `isDone` holds for them (checked at every span's end), within timeoutMs. */
  async until(traceId: string, isDone: (spans: ReadableSpan[]) => boolean, timeoutMs = 60_000): Promise<ReadableSpan[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.inner.forceFlush();
      const spans = this.exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
      if (isDone(spans)) return spans;
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`spans not complete within ${timeoutMs} ms; have: ${spans.map((s) => s.name).join(", ")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

const names = (spans: ReadableSpan[]) => spans.map((s) => s.name);
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const ms = (span: ReadableSpan, which: "startTime" | "endTime") => span[which][0] * 1000 + span[which][1] / 1e6;

describe("job traces (in-memory exporter)", () => {
  let hodei: InProcessServer;
  const processor = new WatchedProcessor(new InMemorySpanExporter());

  before(async () => {
    hodei = await startInProcessServer({ spanProcessor: processor });
  });
  after(async () => {
    await hodei.stop();
  });

  it("records one trace under the caller's span: the job, each phase, the provider calls, and the command's TRACEPARENT", async () => {
    const { job } = await hodei.client.submitJob({ command: ["sh", "-c", 'echo "TP=$TRACEPARENT"'], traceparent: `00-${TRACE}-${CALLER_SPAN}-01` });
    assert.ok(job);
    assert.equal(job.traceId, TRACE, "the job names its trace");
    const spans = await processor.until(TRACE, (s) => ["job", ...PHASES, "provider stop"].every((n) => names(s).includes(n)));

    const root = spans.find((s) => s.name === "job")!;
    assert.equal(parentOf(root), CALLER_SPAN, "the job's span is a child of the caller's span");
    assert.equal(root.attributes["hodei.job.id"], job.id);
    assert.equal(root.attributes["hodei.job.state"], "succeeded");
    const rootId = root.spanContext().spanId;
    const phase = (name: string) => {
      const found = spans.filter((s) => s.name === name);
      assert.equal(found.length, 1, `one ${name} span`);
      assert.equal(parentOf(found[0]), rootId, `${name} is a child of the job's span`);
      assert.equal(found[0].attributes["hodei.attempt"], 1);
      return found[0];
    };
    const [queued, provision, register, run, destroy] = PHASES.map(phase);
    // The phases follow each other, from submit to the worker's destroy, within the job's span but the destroy.
    assert.ok(ms(queued, "startTime") === ms(root, "startTime"), "queued starts at submit");
    for (const [a, b] of [[queued, provision], [provision, register], [register, run], [run, destroy]]) {
      assert.ok(ms(a, "endTime") <= ms(b, "startTime") + 1, `${a.name} ends before ${b.name} starts`);
    }
    assert.ok(ms(run, "endTime") <= ms(root, "endTime") + 1, "the run ends by the job's end");
    assert.equal(run.attributes["hodei.exit_code"], 0);

    const start = spans.find((s) => s.name === "provider start");
    assert.ok(start, "the provider's start is a span");
    assert.equal(parentOf(start), provision.spanContext().spanId, "start is a child of provision");
    const stop = spans.find((s) => s.name === "provider stop")!;
    assert.equal(parentOf(stop), destroy.spanContext().spanId, "stop is a child of destroy");
    const done = await hodei.client.getJob({ id: job.id });
    const resourceId = done.attemptHistory[0].providerResourceId;
    assert.ok(resourceId);
    assert.equal(stop.attributes["hodei.provider_resource_id"], resourceId, "stop names the worker's provider_resource_id");
    assert.equal(run.attributes["hodei.provider_resource_id"], resourceId);

    // The command's spans would join the trace under the run span.
    const log = await logText(hodei.client, job.id);
    assert.match(log, new RegExp(`TP=00-${TRACE}-${phaseSpanId(job.id, 1, "run")}-01\\n`));
    assert.equal(run.spanContext().spanId, phaseSpanId(job.id, 1, "run"));
    // Loaded by the server's lazy import only (this file does not import it): the check the
    // tracing-off test relies on sees modules loaded that way.
    assert.ok(
      Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes("@opentelemetry/exporter-trace-otlp-http")),
      "the exporter module is loaded when tracing is on",
    );
  });

  it("starts a trace of its own without a traceparent, and takes a valid HTTP traceparent header as the parent", async () => {
    const { job } = await hodei.client.submitJob({ command: ["true"] });
    assert.match(job!.traceId, /^[0-9a-f]{32}$/);
    const spans = await processor.until(job!.traceId, (s) => names(s).includes("job"));
    assert.equal(parentOf(spans.find((s) => s.name === "job")!), undefined, "a root span");

    const header = `00-${"ab".repeat(16)}-${"cd".repeat(8)}-01`;
    const viaHeader = await hodei.client.submitJob({ command: ["true"] }, { headers: { traceparent: header } });
    assert.equal(viaHeader.job!.traceId, "ab".repeat(16));
    const garbled = await hodei.client.submitJob({ command: ["true"] }, { headers: { traceparent: "not-a-traceparent" } });
    assert.match(garbled.job!.traceId, /^[0-9a-f]{32}$/, "a malformed header is ignored (W3C): a new trace");
    assert.notEqual(garbled.job!.traceId, "ab".repeat(16));
    await processor.until(viaHeader.job!.traceId, (s) => names(s).includes("destroy"));
    await processor.until(garbled.job!.traceId, (s) => names(s).includes("destroy"));
  });

  it("gives each attempt of a retried job its own phases, the second queued from the first's end", async () => {
    const { job } = await hodei.client.submitJob({ command: ["sh", "-c", 'echo "TP=$TRACEPARENT"; exit 3'], maxAttempts: 2, retryOnExitCodes: "3" });
    const traceId = job!.traceId;
    const ofAttempt = (spans: ReadableSpan[], attempt: number) => spans.filter((s) => s.attributes["hodei.attempt"] === attempt);
    const spans = await processor.until(traceId, (s) => names(s).includes("job") && [1, 2].every((a) => names(ofAttempt(s, a)).includes("destroy")));
    const root = spans.find((s) => s.name === "job")!;
    assert.equal(root.attributes["hodei.job.state"], "failed");
    assert.equal(root.status.code, 2, "a failed job's span is an error"); // SpanStatusCode.ERROR
    for (const attempt of [1, 2]) {
      assert.deepEqual(names(ofAttempt(spans, attempt).filter((s) => PHASES.includes(s.name))).sort(), [...PHASES].sort(), `attempt ${attempt} has every phase`);
      const run = ofAttempt(spans, attempt).find((s) => s.name === "run")!;
      assert.equal(run.status.code, 2, "a run whose command failed is an error");
      assert.equal(run.attributes["hodei.exit_code"], 3);
    }
    const firstRun = ofAttempt(spans, 1).find((s) => s.name === "run")!;
    const secondQueued = ofAttempt(spans, 2).find((s) => s.name === "queued")!;
    assert.equal(ms(secondQueued, "startTime"), ms(firstRun, "endTime"), "the second attempt waits in the queue from the first attempt's end");
    // Each attempt's command is told its own run span.
    const log = await logText(hodei.client, job!.id);
    for (const attempt of [1, 2]) assert.ok(log.includes(`TP=00-${traceId}-${phaseSpanId(job!.id, attempt, "run")}-01\n`), `attempt ${attempt}'s TRACEPARENT`);
  });

  it("refuses a malformed traceparent field, naming it, and stores nothing", async () => {
    const before = (await hodei.client.listJobs({ limit: 100 })).jobs.length;
    for (const bad of ["00-xyz", `00-${TRACE.toUpperCase()}-${CALLER_SPAN}-01`, `00-${"0".repeat(32)}-${CALLER_SPAN}-01`, "x".repeat(100_000)]) {
      await assert.rejects(hodei.client.submitJob({ command: ["true"], traceparent: bad }), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.InvalidArgument);
        assert.match(err.rawMessage, /^traceparent: /);
        assert.ok(err.rawMessage.length < 400, "the value is not echoed");
        return true;
      });
    }
    assert.equal((await hodei.client.listJobs({ limit: 100 })).jobs.length, before);
  });
});
