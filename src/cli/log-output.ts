/**
 * Where a job's log lines go: stdout data to stdout, stderr data to stderr, and "system" lines (from
 * the agent or server, such as a truncation marker) to stderr. Data is written exactly as
 * received, as bytes (a job's output need not be UTF-8): chunks are not lines, so nothing is
 * added, trimmed or decoded. With --json each entry's data is base64, as proto3 JSON has it.
 */
import { LogEntrySchema, type LogEntry } from "../gen/hodei/v1/api_pb.js";
import { describeError, isServerUnreachable } from "./errors.js";
import { formatDurationMs, stderrColors } from "./format.js";
import { messageJson, printJsonLine } from "./json.js";

export interface LogWriterOptions {
  /** Send every stream to stderr, keeping stdout for a JSON document (run --json). */
  isStdoutReserved?: boolean;
  /** One JSON object per entry on stdout instead of the raw data (logs --json). */
  isJson?: boolean;
}

export function logWriter(options: LogWriterOptions = {}): (entry: LogEntry) => void {
  return (entry) => {
    if (options.isJson) {
      printJsonLine(messageJson(LogEntrySchema, entry));
    } else if (entry.stream === "stdout" && !options.isStdoutReserved) {
      process.stdout.write(entry.data);
    } else {
      process.stderr.write(entry.data);
    }
  };
}

/** A dim note on stderr when a log stream broke and is being resumed. */
export function noteRetry(serverUrl: string) {
  return (err: unknown, attempt: number, delayMs: number): void => {
    const why = isServerUnreachable(err) ? "server unreachable" : describeError(err, serverUrl).message;
    process.stderr.write(stderrColors().dim(`hodei: log stream lost (${why}); resuming in ${formatDurationMs(delayMs)} (retry ${attempt})\n`));
  };
}
