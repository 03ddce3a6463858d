/**
 * Reading a job's logs over the server-streaming GetLogs call: the client's one retry policy. When
 * the stream breaks (server restarted, connection lost) reading resumes after the last cursor seen,
 * so no entry is yielded twice or skipped, with exponential backoff; any entry received resets the
 * budget. A follow only ends when the job has ended (the server closes the stream once the job is
 * final and its workers can send nothing more, its last entry carrying the ended job; from a server
 * that sends no such entry, the job is read once): a stream that closes cleanly while the job is
 * still going is treated as broken. An answer from the server (not found, refused) is never retried.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { TERMINAL_JOB_STATES } from "../core/job-state.js";
import type { Job, JobService, LogEntry } from "../gen/hodei/v1/api_pb.js";
import { type HodeiError, toHodeiError } from "./errors.js";

/** Consecutive failures tolerated before giving up (backoff 0.5s, 1s, 2s, 4s, 8s, 8s: about 24s). */
const MAX_RETRIES = 6;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

export interface LogsOptions {
  /** Keep reading until the job has ended (default false: the entries stored so far). */
  follow?: boolean;
  /** Start after this entry (its `cursor`); default 0n, from the first entry. */
  afterCursor?: bigint;
  /** Stops reading; the iterator then throws a HodeiError with code "canceled". */
  signal?: AbortSignal;
  /** Told before each wait for a retry, attempt counting from 1. */
  onRetry?(err: HodeiError, attempt: number, delayMs: number): void;
}

export function isEndedState(state: string): boolean {
  return (TERMINAL_JOB_STATES as readonly string[]).includes(state);
}

/**
 * The job's log entries in order. With follow, the generator's return value is the ended job (read
 * once the stream closed); without, undefined. Every error thrown is a HodeiError.
 */
export async function* readJobLogs(jobs: Client<typeof JobService>, jobId: string, options: LogsOptions = {}): AsyncGenerator<LogEntry, Job | undefined> {
  const follow = options.follow === true;
  const { signal } = options;
  let afterCursor = options.afterCursor ?? 0n;
  let failures = 0;
  for (;;) {
    try {
      for await (const entry of jobs.getLogs({ jobId, follow, afterCursor, endWithJob: follow }, { signal })) {
        // The stream's last entry: the job as it ended (a server without it just closes the stream).
        if (entry.job) {
          if (isEndedState(entry.job.state)) return entry.job;
          break;
        }
        afterCursor = entry.cursor;
        failures = 0;
        yield entry;
      }
      if (!follow) return undefined;
      const job = await jobs.getJob({ id: jobId }, { signal });
      if (isEndedState(job.state)) return job;
      throw new ConnectError(`log stream closed while job ${jobId} is still ${job.state}`, Code.Unavailable);
    } catch (err) {
      if (signal?.aborted || !isRetryable(err) || failures >= MAX_RETRIES) throw toHodeiError(err);
      failures++;
      const delayMs = Math.min(FIRST_DELAY_MS * 2 ** (failures - 1), MAX_DELAY_MS);
      options.onRetry?.(toHodeiError(err), failures, delayMs);
      await sleep(delayMs, undefined, { signal }).catch((abort: unknown) => {
        throw toHodeiError(abort);
      });
    }
  }
}

/** Transport trouble is worth retrying; an answer from the server (not found, invalid) is not. */
function isRetryable(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  return [Code.Unavailable, Code.Aborted, Code.Internal, Code.Unknown, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted].includes(err.code);
}
