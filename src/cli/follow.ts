/**
 * Reading a job's logs over the server-streaming GetLogs call. This is the CLI's one retry policy:
 * when the stream breaks (server restarted, connection lost) reading resumes after the last cursor
 * seen, so no line is printed twice or skipped, with exponential backoff; any line received resets
 * the budget. A follow only ends when the job has ended: a stream that closes cleanly while the job
 * is still going is treated as broken.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Job, LogEntry } from "../gen/hodei/v1/api_pb.js";
import type { ApiClient } from "./client.js";
import { isEnded } from "./format.js";

/** Consecutive failures tolerated before giving up (backoff 0.5s, 1s, 2s, 4s, 8s, 8s: about 24s). */
const MAX_RETRIES = 6;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

export interface ReadLogsOptions {
  onEntry(entry: LogEntry): void;
  /** Called before each wait; attempt counts from 1. */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
}

/** Prints the logs stored so far, then returns. */
export async function readLogs(client: ApiClient, jobId: string, options: ReadLogsOptions): Promise<void> {
  await readWithRetry(client, jobId, false, options);
}

/** Prints logs until the job has ended and every line is read; returns the ended job. */
export async function followLogs(client: ApiClient, jobId: string, options: ReadLogsOptions): Promise<Job> {
  return (await readWithRetry(client, jobId, true, options))!;
}

async function readWithRetry(client: ApiClient, jobId: string, follow: boolean, options: ReadLogsOptions): Promise<Job | undefined> {
  let afterCursor = 0n;
  let failures = 0;
  for (;;) {
    try {
      for await (const entry of client.getLogs({ jobId, follow, afterCursor })) {
        afterCursor = entry.cursor;
        failures = 0;
        options.onEntry(entry);
      }
      if (!follow) return undefined;
      const job = await client.getJob({ id: jobId });
      if (isEnded(job.state)) return job;
      throw new ConnectError(`log stream closed while job ${jobId} is still ${job.state}`, Code.Unavailable);
    } catch (err) {
      if (!isRetryable(err) || failures >= MAX_RETRIES) throw err;
      failures++;
      const delayMs = Math.min(FIRST_DELAY_MS * 2 ** (failures - 1), MAX_DELAY_MS);
      options.onRetry?.(err, failures, delayMs);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** Transport trouble is worth retrying; an answer from the server (not found, invalid) is not. */
function isRetryable(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  return [Code.Unavailable, Code.Aborted, Code.Internal, Code.Unknown, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted].includes(err.code);
}
