/**
 * Human-readable text for values the API returns: durations ("350ms", "1.2s", "3m05s"), times
 * (ISO 8601, or relative: "5m ago", "in 30s"), job commands, and colours for states. Pure functions;
 * colour comes from picocolors, which turns itself off for NO_COLOR, --no-color and non-TTY output.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import pc from "picocolors";
import type { Job } from "../gen/hodei/v1/api_pb.js";

/**
 * Colours for text written to stderr. picocolors decides from stdout alone, so a terminal's
 * stderr next to a piped stdout (or the reverse) needs its own check.
 */
export function stderrColors(): ReturnType<typeof pc.createColors> {
  return pc.createColors(pc.isColorSupported && process.stderr.isTTY === true);
}

/** Job states after which nothing changes. */
export const ENDED_JOB_STATES: readonly string[] = ["succeeded", "failed", "canceled", "timed_out"];
export const JOB_STATES: readonly string[] = ["queued", "provisioning", "running", ...ENDED_JOB_STATES];

export function isEnded(state: string): boolean {
  return ENDED_JOB_STATES.includes(state);
}

/** Shown for a value that is not set. */
export const NONE = "-";

export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = ms / 1000;
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${pad2(Math.floor(seconds % 60))}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${pad2(minutes % 60)}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}

/** "5s ago", "3m ago", "in 2h"; coarse on purpose, for tables. */
export function formatRelativeMs(timeMs: number, nowMs: number): string {
  const diffMs = nowMs - timeMs;
  const abs = Math.abs(diffMs);
  if (abs < 1000) return "just now";
  const units: [number, string][] = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "m"],
    [1000, "s"],
  ];
  const [size, unit] = units.find(([size]) => abs >= size)!;
  const amount = `${Math.floor(abs / size)}${unit}`;
  return diffMs >= 0 ? `${amount} ago` : `in ${amount}`;
}

export function formatRelative(ts: Timestamp | undefined, nowMs: number): string {
  return ts ? formatRelativeMs(timestampMs(ts), nowMs) : NONE;
}

/** ISO 8601 in UTC, to the second: 2025-01-31T12:00:05Z. */
export function formatTime(ts: Timestamp | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace(/\.\d{3}Z$/, "Z") : NONE;
}

/** Run time: started to finished (or to now while running); undefined before it starts. */
export function jobDurationMs(job: Job, nowMs: number): number | undefined {
  const started = job.timeline?.started;
  if (!started) return undefined;
  const finished = job.finishedAt ?? job.timeline?.finished;
  if (finished) return timestampMs(finished) - timestampMs(started);
  return isEnded(job.state) ? undefined : nowMs - timestampMs(started);
}

export function formatJobDuration(job: Job, nowMs: number): string {
  const ms = jobDurationMs(job, nowMs);
  return ms === undefined ? NONE : formatDurationMs(ms);
}

/** The command as a shell would read it; a script shows as "script: <first line>". */
export function formatCommand(job: Pick<Job, "command" | "script">): string {
  if (job.command.length === 1) return job.command[0];
  if (job.command.length > 1) return job.command.map(shellQuote).join(" ");
  if (job.script) return `script: ${job.script.trim().split("\n")[0]}`;
  return NONE;
}

export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function truncate(text: string, maxChars: number): string {
  const oneLine = text.replace(/\s*\n\s*/g, " ");
  return oneLine.length <= maxChars ? oneLine : `${oneLine.slice(0, maxChars - 1)}…`;
}

export function colorState(state: string): string {
  switch (state) {
    case "succeeded":
      return pc.green(state);
    case "failed":
    case "timed_out":
      return pc.red(state);
    case "canceled":
    case "destroying":
      return pc.yellow(state);
    case "running":
    case "registered":
      return pc.cyan(state);
    case "destroyed":
      return pc.dim(state);
    default:
      return state;
  }
}

export function yesNo(value: boolean): string {
  return value ? "yes" : "no";
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}
