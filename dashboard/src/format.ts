/** Formatting shared by the pages: times, durations, states. */
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export function ms(ts: Timestamp | undefined): number | null {
  return ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : null;
}

export function duration(fromMs: number | null, toMs: number | null): string {
  if (fromMs === null || toMs === null) return "";
  return formatMs(toMs - fromMs);
}

export function formatMs(d: number): string {
  if (d < 0) d = 0;
  if (d < 1000) return `${Math.round(d)} ms`;
  if (d < 60_000) return `${(d / 1000).toFixed(d < 10_000 ? 2 : 1)} s`;
  if (d < 3_600_000) return `${Math.floor(d / 60_000)} m ${Math.round((d % 60_000) / 1000)} s`;
  return `${Math.floor(d / 3_600_000)} h ${Math.round((d % 3_600_000) / 60_000)} m`;
}

/** "12 s ago", "3 m ago", or the date for older times. */
export function ago(t: number | null, now = Date.now()): string {
  if (t === null) return "";
  const d = now - t;
  if (d < -1000) return `in ${formatMs(-d)}`;
  if (d < 60_000) return `${Math.max(0, Math.round(d / 1000))} s ago`;
  if (d < 3_600_000) return `${Math.round(d / 60_000)} m ago`;
  if (d < 86_400_000) return `${Math.round(d / 3_600_000)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

export function isoTime(t: number | null): string {
  return t === null ? "" : new Date(t).toISOString().replace("T", " ").replace("Z", " UTC");
}

export const JOB_STATES = ["queued", "provisioning", "running", "succeeded", "failed", "canceled", "timed_out"] as const;
export const FINISHED = new Set(["succeeded", "failed", "canceled", "timed_out"]);

export function commandOf(job: { command: string[]; script: string }): string {
  if (job.script) return job.script.split("\n")[0] + (job.script.includes("\n") ? " …" : "");
  return job.command.length === 1 ? job.command[0] : job.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}
