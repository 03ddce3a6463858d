/**
 * Waiting for a job to be over: ended, and every worker it had destroyed, so that nothing of it is
 * left on a provider. Used by `verify` and `doctor` (the CLI's and the dashboard's). Polls GetJob (cheap) every 200 ms until the
 * caller's deadline; a server that is briefly unreachable is polled again rather than given up on.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Job, JobService } from "../gen/hodei/v1/api_pb.js";

/** A JobService client: the CLI's (Node transport) or the dashboard's (browser transport). */
export type ApiClient = Client<typeof JobService>;

/** Job states after which nothing changes. */
const ENDED_STATES: readonly string[] = ["succeeded", "failed", "canceled", "timed_out"];

export function isEnded(state: string): boolean {
  return ENDED_STATES.includes(state);
}

export const SETTLE_POLL_MS = 200;

/** Ended, and no worker of it is still alive (a job canceled while queued had none). */
export function isSettled(job: Pick<Job, "state" | "attemptHistory">): boolean {
  return isEnded(job.state) && job.attemptHistory.every((attempt) => attempt.workerState === "destroyed");
}

export interface SettleResult {
  /** The last state seen. */
  job: Job;
  /** False when the deadline came first. */
  isSettled: boolean;
}

/** Polls the job until it is settled or deadlineMs (epoch ms) has passed. */
export async function waitUntilSettled(client: ApiClient, jobId: string, deadlineMs: number, pollMs = SETTLE_POLL_MS): Promise<SettleResult> {
  let last: Job | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await client.getJob({ id: jobId });
      if (isSettled(last)) return { job: last, isSettled: true };
    } catch (err) {
      if (!isTransient(err)) throw err;
      lastError = err;
    }
    const leftMs = deadlineMs - Date.now();
    if (leftMs <= 0) {
      if (last) return { job: last, isSettled: false };
      throw lastError;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, leftMs)));
  }
}

/** Created to finished (submission to result), or null while the job has not finished. */
export function jobSpanMs(job: Pick<Job, "createdAt" | "finishedAt" | "timeline">): number | null {
  const created = job.createdAt ?? job.timeline?.queued;
  const finished = job.finishedAt ?? job.timeline?.finished;
  return created && finished ? timestampMs(finished) - timestampMs(created) : null;
}

/** Asks the server to cancel jobs still going (after a deadline), ignoring any refusal. */
export async function cancelUnended(client: ApiClient, jobs: Job[]): Promise<void> {
  await Promise.all(jobs.filter((job) => !isEnded(job.state)).map((job) => client.cancelJob({ id: job.id }).catch(() => undefined)));
}

function isTransient(err: unknown): boolean {
  return err instanceof ConnectError && [Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Aborted].includes(err.code);
}
