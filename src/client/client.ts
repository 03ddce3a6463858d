/**
 * The typed client of a Hodei server's JobService: submit, get, list, cancel and rerun jobs, read
 * their logs as an async iterator, and wait for a job to end; and `schedules` (schedules.ts), jobs
 * the server submits on a cron schedule. The CLI runs on it too. Every method
 * fails with a HodeiError (errors.ts) whose `code` is the Connect code of the answer.
 *
 * wait() learns of the end from the server, not by polling: it follows the job's log stream, which
 * the server closes once the job has ended and its workers can send nothing more (the same stream,
 * with the same resume-and-retry policy, as logs({ follow: true })).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import type { Job, ListJobsRequestSchema, ListJobsResponse, LogEntry, SubmitJobRequestSchema } from "../gen/hodei/v1/api_pb.js";
import { abortAfter } from "../core/abort.js";
import { HodeiError, mapErrors, toHodeiError, WaitTimeoutError } from "./errors.js";
import { isEndedState, type LogsOptions, readJobLogs } from "./logs.js";
import { createScheduleClient, type ScheduleClient } from "./schedules.js";
import { type ApiClients, type ClientOptions, createApiClients, createTransport } from "./transport.js";

/** What to run: SubmitJobRequest's fields, each optional (command or script is required). */
export type JobSpec = MessageInitShape<typeof SubmitJobRequestSchema>;
/** ListJobs' filters and paging: states, provider, labelSelector ("k=v,k2=v2"), limit, pageToken. */
export type JobFilter = MessageInitShape<typeof ListJobsRequestSchema>;

export interface WaitOptions {
  /** Give up after this long with a WaitTimeoutError (the job goes on); default: no limit. */
  timeoutMs?: number;
  /** Stops waiting; wait then rejects with a HodeiError with code "canceled". */
  signal?: AbortSignal;
  /** Each log entry as it arrives; without it the entries are read and dropped. */
  onLog?(entry: LogEntry): void;
  /** Told when the stream broke and is resumed (see logs()). */
  onRetry?: LogsOptions["onRetry"];
}

export interface HodeiClient {
  /** Submits a job; resolves with it as stored (state queued, its id assigned). */
  submit(spec: JobSpec): Promise<Job>;
  get(id: string): Promise<Job>;
  /** One page of jobs, newest first; `nextPageToken` is "" on the last page. */
  list(filter?: JobFilter): Promise<ListJobsResponse>;
  /** Asks the server to cancel the job; resolves with the job after the request (an ended job is returned as it is). */
  cancel(id: string): Promise<Job>;
  /** Submits a copy of an ended job as a new job; resolves with the new job. */
  rerun(id: string): Promise<Job>;
  /**
   * The job's log entries in order; with follow, until the job has ended (resuming after the last
   * entry seen if the connection drops; with follow the generator's return value is the ended job).
   */
  logs(id: string, options?: LogsOptions): AsyncGenerator<LogEntry, Job | undefined>;
  /** Resolves with the job once it has ended (succeeded, failed, canceled or timed_out). */
  wait(id: string, options?: WaitOptions): Promise<Job>;
  /** Schedules: create, get, list, pause, resume, remove. */
  readonly schedules: ScheduleClient;
}

export function createClient(options: ClientOptions): HodeiClient {
  return createClientOn(createTransport(options));
}

/** A client on a transport made by createTransport (the CLI adds interceptors of its own). */
export function createClientOn(transport: Transport): HodeiClient {
  const api = createApiClients(transport);
  return {
    async submit(spec) {
      const { job } = await mapErrors(api.jobs.submitJob(spec));
      if (!job) throw new HodeiError("the server accepted the job but returned no job", "internal");
      return job;
    },
    get: (id) => mapErrors(api.jobs.getJob({ id })),
    list: (filter = {}) => mapErrors(api.jobs.listJobs(filter)),
    cancel: (id) => mapErrors(api.jobs.cancelJob({ id })),
    rerun: (id) => mapErrors(api.jobs.rerunJob({ id })),
    logs: (id, logsOptions) => readJobLogs(api.jobs, id, logsOptions),
    wait: (id, waitOptions) => waitForEnd(api, id, waitOptions),
    schedules: createScheduleClient(api.schedules),
  };
}

async function waitForEnd(api: ApiClients, jobId: string, options: WaitOptions = {}): Promise<Job> {
  const { timeoutMs, onLog } = options;
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new HodeiError(`timeoutMs: a positive number of milliseconds, got ${timeoutMs}`, "invalid_argument");
  }
  // Not AbortSignal.any with AbortSignal.timeout: on Node 20 that time limit may never fire (core/abort.ts).
  const limit = abortAfter(timeoutMs, options.signal);
  const signal = limit.signal;
  try {
    if (!onLog) {
      // Nothing to show: an ended job needs no log stream.
      const job = await api.jobs.getJob({ id: jobId }, { signal });
      if (isEndedState(job.state)) return job;
    }
    const entries = readJobLogs(api.jobs, jobId, { follow: true, signal, onRetry: options.onRetry });
    for (;;) {
      const next = await entries.next();
      if (next.done) return next.value!;
      onLog?.(next.value);
    }
  } catch (err) {
    if (limit.timedOut() && !options.signal?.aborted) throw new WaitTimeoutError(jobId, timeoutMs!, { cause: err });
    throw toHodeiError(err);
  } finally {
    limit.dispose();
  }
}
