/**
 * A job's trace: one span for the job (from submit to its final state), under the caller's span
 * when the submit gave a traceparent, and under it one span per phase of each attempt (queued,
 * provision, register, run, destroy) and one per provider call about the attempt's worker.
 *
 * Phases happen in different passes, processes and replicas, and across restarts, so no span is
 * kept open in memory: each is emitted whole when its phase ends, with the start and end times the
 * rows recorded, and with ids derived from the job id (core/trace-context.ts), so that every replica
 * puts it in the same place. Where each is emitted, right after the guarded write that ends it (the
 * write's one winner emits it once):
 *   queued     the claim (provision.ts)           provision  the provider_resource_id recorded
 *   register   Register (worker-service.ts)       run        the worker destroyed (destroy.ts), from
 *   destroy    the worker destroyed                          its started_at and finished_at
 *   job        the job's final state (agent-stream.ts, attempt-loss.ts, deadlines.ts, cancel.ts)
 * A phase an attempt never finished (a start that failed, a worker that never registered) is
 * emitted at the destroy as an error span that ends when the attempt ended. Routine inspections
 * that find the worker running are not spans (a long job would gather one per pass).
 *
 * Off (no OTLP endpoint, no injected span processor), this is a no-op whose methods return at once
 * and no OpenTelemetry module is loaded. Recording never fails a step: a read it needs runs in the
 * background and logs its failure. The spans themselves go to a SpanSink (job-trace-sdk.ts).
 */
import type { Logger } from "pino";
import { toError } from "../core/errors.js";
import { type JobPhase, type JobTraceColumns, jobSpanId, jobTraceFlags, parseTraceparent, phaseSpanId } from "../core/trace-context.js";
import type { JobRow, WorkerRow } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { TracingConfig } from "../tracing-config.js";

/** One finished span, as the sink records it. */
export interface SpanRecord {
  name: string;
  traceId: string;
  /** Unset: a random id (provider calls). */
  spanId?: string;
  parent?: { spanId: string; isRemote: boolean };
  flags: number;
  kind: "internal" | "client";
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number>;
  /** Set: the span's status is error, with this message. */
  error?: string;
}

export interface SpanSink {
  record(span: SpanRecord): void;
  /** Exports what is buffered and stops. */
  close(): Promise<void>;
}

/** Jobs whose trace columns are kept in memory (a cache: a miss reads the row). */
const CACHED_JOBS = 10_000;

export class JobTrace {
  private readonly jobs = new Map<string, JobTraceColumns>();
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly sink: SpanSink | null,
    private readonly deps: { store?: Store; log?: Logger } = {},
  ) {}

  /** True when spans are recorded here (an endpoint is set, or a test injected a processor). */
  get isRecording(): boolean {
    return this.sink !== null;
  }

  /** A job was claimed for an attempt: its queued phase ends (it began at submit, or when the last attempt ended). */
  claimed(job: JobRow, worker: WorkerRow): void {
    if (!this.sink || !this.remember(job).trace_id) return;
    const emit = (startMs: number) => this.phase(job, worker, "queued", startMs, worker.created_at);
    if (worker.attempt <= 1) return emit(job.created_at);
    this.background(async () => {
      const previous = (await this.deps.store!.workers.listOfJob(job.id)).filter((w) => w.attempt < worker.attempt).at(-1);
      emit(previous?.finished_at ?? job.created_at);
    });
  }

  /** The provider returned the worker's provider_resource_id: provision ends. */
  provisioned(job: JobRow, worker: WorkerRow | null | undefined): void {
    if (!this.sink || !worker || worker.provisioned_at === null || !this.remember(job).trace_id) return;
    this.phase(job, worker, "provision", worker.created_at, worker.provisioned_at);
  }

  /** The agent redeemed its OTP token: register ends. */
  registered(worker: WorkerRow): void {
    if (!this.sink || worker.registered_at === null) return;
    this.withJob(worker.job_id, (job) => this.phase(job, worker, "register", worker.provisioned_at ?? worker.created_at, worker.registered_at!));
  }

  /**
   * The worker is destroyed: its run (or the phase its attempt ended in) and its destroy are
   * emitted, from the times on its row.
   */
  destroyed(worker: WorkerRow): void {
    if (!this.sink || worker.destroyed_at === null) return;
    this.withJob(worker.job_id, (job) => {
      const endedMs = worker.finished_at ?? worker.destroyed_at!;
      const why = worker.failure_reason || "the attempt ended";
      if (worker.started_at !== null) {
        const failed = worker.failure_reason || (worker.exit_code !== null && worker.exit_code !== 0 ? `the command exited with code ${worker.exit_code}` : "");
        this.phase(job, worker, "run", worker.started_at, endedMs, failed, worker.exit_code === null ? {} : { "hodei.exit_code": worker.exit_code });
      } else if (worker.registered_at === null && worker.provisioned_at !== null) {
        this.phase(job, worker, "register", worker.provisioned_at, endedMs, `the worker never registered: ${why}`);
      } else if (worker.provisioned_at === null) {
        this.phase(job, worker, "provision", worker.created_at, endedMs, `the worker was never provisioned: ${why}`);
      }
      this.phase(job, worker, "destroy", endedMs, worker.destroyed_at!);
    });
  }

  /** The job reached its final state: its own span, from submit to now. */
  jobEnded(job: JobRow | null | undefined): void {
    if (!this.sink || !job || !this.remember(job).trace_id) return;
    const caller = job.trace_parent ? parseTraceparent(job.trace_parent) : null;
    const isError = job.state === "failed" || job.state === "timed_out";
    this.sink.record({
      name: "job",
      traceId: job.trace_id,
      spanId: jobSpanId(job.id),
      parent: caller ? { spanId: caller.spanId, isRemote: true } : undefined,
      flags: jobTraceFlags(job),
      kind: "internal",
      startMs: job.created_at,
      endMs: job.finished_at ?? job.updated_at,
      attributes: {
        "hodei.job.id": job.id,
        "hodei.job.state": job.state,
        "hodei.job.attempts": job.attempts,
        "hodei.provider": job.provider,
        ...(job.exit_code === null ? {} : { "hodei.exit_code": job.exit_code }),
        ...(job.reason ? { "hodei.job.reason": job.reason } : {}),
      },
      error: isError ? job.reason || job.state : undefined,
    });
  }

  /**
   * A provider call about `worker` returned (or failed): a client span under the phase it belongs
   * to (start: provision; stop, list: destroy; others: the job). An inspect that finds the worker
   * running, or waiting with nothing to say, is not recorded.
   */
  providerCall(worker: WorkerRow, what: string, startMs: number, endMs: number, outcome: { error?: Error; result?: unknown }): void {
    if (!this.sink) return;
    if (what === "inspect" && !outcome.error && isRoutine(outcome.result)) return;
    this.withJob(worker.job_id, (job) => {
      const phase: JobPhase | null = what === "start" ? "provision" : what === "stop" || what === "list" ? "destroy" : null;
      this.sink!.record({
        name: `provider ${what}`,
        traceId: job.trace_id,
        parent: { spanId: phase ? phaseSpanId(job.id, worker.attempt, phase) : jobSpanId(job.id), isRemote: false },
        flags: jobTraceFlags(job),
        kind: "client",
        startMs,
        endMs,
        attributes: { ...workerAttributes(job, worker), "hodei.provider.call": what },
        error: outcome.error?.message,
      });
    });
  }

  /** Resolves when every background read started so far has settled (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Emits what is pending and exports what is buffered (shutdown). */
  async close(): Promise<void> {
    await this.settle();
    await this.sink?.close();
  }

  private phase(job: JobTraceColumns, worker: WorkerRow, phase: JobPhase, startMs: number, endMs: number, error = "", extra: Record<string, number> = {}): void {
    this.sink!.record({
      name: phase,
      traceId: job.trace_id,
      spanId: phaseSpanId(job.id, worker.attempt, phase),
      parent: { spanId: jobSpanId(job.id), isRemote: false },
      flags: jobTraceFlags(job),
      kind: "internal",
      startMs,
      endMs,
      attributes: { ...workerAttributes(job, worker), ...extra },
      error: error || undefined,
    });
  }

  /** Runs `emit` with the job's trace columns (cached, else read), when its spans are recorded. */
  private withJob(jobId: string, emit: (job: JobTraceColumns) => void): void {
    const cached = this.jobs.get(jobId);
    if (cached) {
      if (cached.trace_id) emit(cached);
      return;
    }
    this.background(async () => {
      const row = await this.deps.store!.jobs.get(jobId);
      if (row && this.remember(row).trace_id) emit(row);
    });
  }

  private remember(job: JobRow): JobTraceColumns {
    const columns = { id: job.id, trace_id: job.trace_id, trace_parent: job.trace_parent };
    if (!this.jobs.has(job.id)) {
      if (this.jobs.size >= CACHED_JOBS) this.jobs.delete(this.jobs.keys().next().value!);
      this.jobs.set(job.id, columns);
    }
    return columns;
  }

  private background(task: () => Promise<void>): void {
    const running = task().catch((err: unknown) => this.deps.log?.warn({ err: toError(err) }, "could not record a job's trace span; it is lost"));
    this.pending.add(running);
    void running.finally(() => this.pending.delete(running));
  }
}

function workerAttributes(job: JobTraceColumns, worker: WorkerRow): Record<string, string | number> {
  return {
    "hodei.job.id": job.id,
    "hodei.attempt": worker.attempt,
    "hodei.worker.id": worker.id,
    "hodei.provider": worker.provider,
    ...(worker.provider_resource_id ? { "hodei.provider_resource_id": worker.provider_resource_id } : {}),
  };
}

/** An inspect's answer that changes nothing: running, or waiting with no reason given. */
function isRoutine(result: unknown): boolean {
  const status = result as { state?: string; detail?: string } | undefined;
  return status?.state === "running" || (status?.state === "pending" && !status.detail);
}

/** The no-op: tracing off. */
export const NO_JOB_TRACE = new JobTrace(null);

export interface JobTraceOptions {
  /** The OTLP settings (config.tracing); undefined: no export. */
  config?: TracingConfig;
  /**
   * A span processor to record with instead of the OTLP exporter (tests inject an in-memory one).
   * Typed loosely so that this module imports nothing of OpenTelemetry.
   */
  spanProcessor?: unknown;
  store: Store;
  log: Logger;
  /** service.instance.id of the spans' resource. */
  replicaId: string;
}

/** The job trace of this control plane: the no-op when off, without loading any OpenTelemetry module. */
export async function openJobTrace(options: JobTraceOptions): Promise<JobTrace> {
  if (!options.config && !options.spanProcessor) return NO_JOB_TRACE;
  const { openSpanSink } = await import("./job-trace-sdk.js");
  return new JobTrace(openSpanSink(options), { store: options.store, log: options.log });
}
