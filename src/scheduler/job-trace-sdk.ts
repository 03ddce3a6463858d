/**
 * The OpenTelemetry SDK behind job-trace.ts, loaded only when tracing is on. Spans are emitted
 * whole, after the fact, with the ids job-trace.ts chose: the SDK's id generator is told the next
 * ids just before each (synchronous) startSpan. The provider is not registered globally; only Hodei's
 * own spans go through it. Export is OTLP over HTTP with JSON (the exporter's encoding), in batches;
 * a failing export is logged when it starts failing and when it recovers (with the spans dropped
 * meanwhile), never silently.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  type IdGenerator,
  ParentBasedSampler,
  RandomIdGenerator,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import type { Logger } from "pino";
import type { JobTraceOptions, SpanRecord, SpanSink } from "./job-trace.js";

/** Time the last export gets at shutdown, ms. */
const CLOSE_TIMEOUT_MS = 5000;
/** Export result code of success (@opentelemetry/core ExportResultCode.SUCCESS). */
const EXPORT_SUCCESS = 0;

/** Random ids, except those given for the next span. */
class ChosenIds implements IdGenerator {
  next: { traceId?: string; spanId?: string } = {};
  private readonly random = new RandomIdGenerator();
  generateTraceId(): string {
    return this.next.traceId ?? this.random.generateTraceId();
  }
  generateSpanId(): string {
    return this.next.spanId ?? this.random.generateSpanId();
  }
}

/** Logs a failing export when it starts failing and when it recovers, with what was lost. */
class LoggedExporter implements SpanExporter {
  private droppedSpans = 0;
  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
    private readonly url: string,
  ) {}
  export(spans: ReadableSpan[], done: Parameters<SpanExporter["export"]>[1]): void {
    this.inner.export(spans, (result) => {
      if (result.code === EXPORT_SUCCESS) {
        if (this.droppedSpans > 0) this.log.info({ url: this.url, droppedSpans: this.droppedSpans }, "trace export works again");
        this.droppedSpans = 0;
      } else {
        if (this.droppedSpans === 0) this.log.warn({ err: result.error, url: this.url }, "trace export failed; spans are dropped until it works again");
        this.droppedSpans += spans.length;
      }
      done(result);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

export function openSpanSink(options: JobTraceOptions): SpanSink {
  const { config, log } = options;
  const processor =
    (options.spanProcessor as SpanProcessor | undefined) ??
    new BatchSpanProcessor(new LoggedExporter(new OTLPTraceExporter({ url: config!.url, headers: config!.headers }), log, config!.url), {
      maxQueueSize: 2048,
      maxExportBatchSize: 512,
      scheduledDelayMillis: 1000,
      exportTimeoutMillis: 10_000,
    });
  const ids = new ChosenIds();
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ "service.name": config?.serviceName ?? "hodei", "service.instance.id": options.replicaId })),
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    idGenerator: ids,
    spanProcessors: [processor],
  });
  const tracer = provider.getTracer("hodei");
  log.info({ url: config?.url ?? "(injected span processor)" }, "tracing on: job traces are exported");
  return {
    record(span: SpanRecord): void {
      const parent = span.parent
        ? trace.setSpanContext(ROOT_CONTEXT, { traceId: span.traceId, spanId: span.parent.spanId, traceFlags: span.flags, isRemote: span.parent.isRemote })
        : ROOT_CONTEXT;
      ids.next = { traceId: span.traceId, spanId: span.spanId };
      let started;
      try {
        started = tracer.startSpan(
          span.name,
          { kind: span.kind === "client" ? SpanKind.CLIENT : SpanKind.INTERNAL, startTime: new Date(span.startMs), attributes: span.attributes },
          parent,
        );
      } finally {
        ids.next = {};
      }
      if (span.error) started.setStatus({ code: SpanStatusCode.ERROR, message: span.error });
      started.end(new Date(Math.max(span.endMs, span.startMs)));
    },
    async close(): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.warn({ timeoutMs: CLOSE_TIMEOUT_MS }, "trace export did not finish at shutdown; the last spans may be lost");
          resolve();
        }, CLOSE_TIMEOUT_MS);
      });
      try {
        await Promise.race([provider.shutdown().catch((err: unknown) => log.warn({ err }, "trace export failed at shutdown")), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
