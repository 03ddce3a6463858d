/**
 * How `hodei run` ends: the exit code a finished job maps to, and the lines said about it on stderr.
 * A job that exited passes its own code on; one that never got to exit maps like a shell would:
 * 124 for timed_out (as timeout(1)), 130 for canceled (as an interrupt), 1 for anything else.
 */
import type { Job } from "../gen/hodei/v1/api_pb.js";
import { formatJobDuration, stderrColors } from "./format.js";

export function exitCodeOf(job: Job): number {
  if (job.exitCode !== undefined) return job.exitCode >= 0 && job.exitCode <= 255 ? job.exitCode : 1;
  if (job.state === "succeeded") return 0;
  if (job.state === "timed_out") return 124;
  if (job.state === "canceled") return 130;
  return 1;
}

/**
 * Says why the job ended unless its own command's exit explains it; on a terminal (isChatty) also a
 * one-line summary. Warns when logs were cut or are missing lines.
 */
export function reportJobEnd(job: Job, isChatty: boolean, nowMs = Date.now()): void {
  const pc = stderrColors();
  const explainsItself = job.state === "succeeded" || (job.state === "failed" && job.exitCode !== undefined);
  if (!explainsItself) {
    process.stderr.write(`hodei: job ${job.id} ${job.state}${job.reason ? `: ${job.reason}` : ""}\n`);
  } else if (isChatty) {
    const exit = job.exitCode === undefined ? "" : ` with exit code ${job.exitCode}`;
    const line = `job ${job.id} ${job.state}${exit} in ${formatJobDuration(job, nowMs)}`;
    process.stderr.write(`${job.state === "succeeded" ? pc.dim(line) : pc.red(line)}\n`);
  }
  if (job.logsTruncated) {
    process.stderr.write(pc.yellow(`hodei: the output of job ${job.id} was cut at the server's log limit\n`));
  }
  if (job.logsIncomplete) {
    process.stderr.write(pc.yellow(`hodei: the worker of job ${job.id} ended before all its output reached the server\n`));
  }
}
