/**
 * The human view of one job (`hodei jobs get`): key/value lines, the timeline of its latest attempt
 * with offsets from when it was queued, and every attempt with its exit code and why it ended.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import pc from "picocolors";
import type { Attempt, Job, Timeline, Toleration, WebhookDelivery } from "../gen/hodei/v1/api_pb.js";
import { NONE, colorState, formatCommand, formatDurationMs, formatJobDuration, formatRelative, formatTime } from "./format.js";
import { printFields } from "./table.js";

const TIMELINE_STEPS = ["queued", "provisioned", "registered", "started", "finished", "destroyed"] as const;

export function printJobDetails(job: Job, nowMs: number): void {
  const entries = (record: Record<string, string>) =>
    Object.keys(record).length === 0 ? undefined : Object.entries(record).map(([k, v]) => `${k}=${v}`).join(" ");
  printFields([
    ["id", job.id],
    ["state", colorState(job.state)],
    ["exit code", job.exitCode === undefined ? NONE : String(job.exitCode)],
    ["reason", job.reason || undefined],
    ["provider", job.provider || NONE],
    ["command", job.command.length > 0 ? formatCommand(job) : undefined],
    ["image", job.image || undefined],
    // Resources and provider details.
    ["resources", formatResources(job)],
    ["pull policy", job.image ? job.pullPolicy || undefined : undefined],
    ["node selector", entries(job.nodeSelector)],
    ["tolerations", job.tolerations.length > 0 ? job.tolerations.map(formatToleration).join(" ") : undefined],
    ["env", job.envRedacted ? redactedEnv(job.env) : entries(job.env)],
    ["secrets", job.secretNames.length > 0 ? `${job.secretNames.join(" ")} ${pc.dim("(values never shown)")}` : undefined],
    ["labels", entries(job.labels)],
    ["timeout", job.timeoutSeconds ? `${job.timeoutSeconds}s` : undefined],
    ["attempts", formatAttempts(job)],
    ["retry on exit", job.retryOnExitCodes || undefined],
    ["rerun of", job.rerunOf || undefined],
    ["schedule", job.scheduleName ? `${job.scheduleName} (tick ${job.labels["hodei.io/schedule-tick"] ?? "?"})` : undefined],
    ["submitted by", job.submittedBy || undefined],
    ["trace id", job.traceId || undefined],
    ["created", `${formatTime(job.createdAt)} (${formatRelative(job.createdAt, nowMs)})`],
    ["finished", job.finishedAt ? `${formatTime(job.finishedAt)} (${formatRelative(job.finishedAt, nowMs)})` : undefined],
    ["duration", formatJobDuration(job, nowMs)],
    ["logs", logsNote(job)],
    ...queueFields(job, nowMs),
  ]);
  if (job.script) {
    process.stdout.write(`${pc.bold("script")}\n`);
    for (const line of job.script.trimEnd().split("\n")) process.stdout.write(`  ${line}\n`);
  }
  if (job.timeline) {
    process.stdout.write(`${pc.bold("timeline")}\n`);
    printFields(timelineFields(job.timeline, job.timeline.queued ?? job.createdAt), "  ");
  }
  if (job.attemptHistory.length > 0) {
    process.stdout.write(`${pc.bold("attempts")}\n`);
    for (const attempt of job.attemptHistory) printAttempt(attempt, job.createdAt);
  }
  if (job.deliveries.length > 0) {
    process.stdout.write(`${pc.bold("webhooks")}\n`);
    for (const delivery of job.deliveries) printDelivery(delivery, nowMs);
  }
}

/** One webhook delivery: its URL and state, then its requests and the last answer. */
function printDelivery(d: WebhookDelivery, nowMs: number): void {
  const state = d.state === "delivered" ? pc.green(d.state) : d.state === "failed" ? pc.red(d.state) : pc.yellow(d.state);
  process.stdout.write(`  ${d.url} ${state}\n`);
  printFields(
    [
      ["delivery", d.id],
      ["requests", String(d.attempts)],
      ["last answer", d.lastStatus ? `HTTP ${d.lastStatus}` : undefined],
      ["last error", d.lastError ? pc.red(d.lastError) : undefined],
      ["delivered", d.deliveredAt ? `${formatTime(d.deliveredAt)} (${formatRelative(d.deliveredAt, nowMs)})` : undefined],
      ["next try", d.nextAttemptAt ? `${formatTime(d.nextAttemptAt)} (${formatRelative(d.nextAttemptAt, nowMs)})` : undefined],
    ],
    "    ",
  );
}

function printAttempt(attempt: Attempt, origin: Timestamp | undefined): void {
  const resource = attempt.providerResourceId
    ? `${attempt.providerResourceId}${attempt.resourceType ? ` (${attempt.resourceType})` : ""}`
    : NONE;
  process.stdout.write(`  ${pc.bold(`#${attempt.number}`)}\n`);
  printFields(
    [
      ["worker", attempt.workerId ? `${attempt.workerId}${attempt.workerName ? ` (${attempt.workerName})` : ""}` : NONE],
      ["provider", attempt.provider || NONE],
      ["resource", resource],
      ["worker state", attempt.workerState ? colorState(attempt.workerState) : NONE],
      ["exit code", attempt.exitCode === undefined ? undefined : String(attempt.exitCode)],
      ["ended", attempt.reason ? (attempt.failureReason || attempt.exitCode !== 0 ? pc.red(attempt.reason) : attempt.reason) : undefined],
      ...(attempt.timeline ? timelineFields(attempt.timeline, origin) : []),
    ],
    "    ",
  );
}

/** Each step that happened: its time, and how long after `origin` (the job being queued). */
function timelineFields(timeline: Timeline, origin: Timestamp | undefined): [string, string | undefined][] {
  return TIMELINE_STEPS.map((step) => {
    const ts = timeline[step];
    if (!ts) return [step, undefined];
    const offset = origin && step !== "queued" ? pc.dim(` +${formatDurationMs(timestampMs(ts) - timestampMs(origin))}`) : "";
    return [step, `${formatTime(ts)}${offset}`];
  });
}

/** Names only: the server withholds the values from a key without the read scope. */
function redactedEnv(env: Record<string, string>): string | undefined {
  const names = Object.keys(env);
  return names.length === 0 ? undefined : `${names.join(" ")} ${pc.dim("(values hidden: this key lacks the read scope)")}`;
}

/** Priority, queue timeout and run-at, each only when it is not the default. */
function queueFields(job: Job, nowMs: number): [string, string | undefined][] {
  const isScheduled = job.runAt && job.createdAt && timestampMs(job.runAt) > timestampMs(job.createdAt);
  return [
    ["priority", job.priority !== 0 ? String(job.priority) : undefined],
    ["queue timeout", job.queueTimeoutSeconds ? `${job.queueTimeoutSeconds}s after it is due` : undefined],
    ["run at", isScheduled ? `${formatTime(job.runAt)} (${formatRelative(job.runAt, nowMs)})` : undefined],
  ];
}

function logsNote(job: Job): string | undefined {
  const notes = [];
  if (job.logsTruncated) notes.push("truncated at the server's log limit");
  if (job.logsIncomplete) notes.push("incomplete: the worker ended before every line reached the server");
  return notes.length > 0 ? pc.yellow(notes.join("; ")) : undefined;
}

/** "2 of 3", or "3 of 1 (2 not counted: lost by the provider)" when some were not the job's fault. */
export function formatAttempts(job: Job): string {
  const counted = `${job.attempts - job.uncountedAttempts} of ${job.maxAttempts || 1}`;
  return job.uncountedAttempts > 0 ? `${counted} (+${job.uncountedAttempts} not counted: lost by the provider)` : counted;
}

// ---- resources ------------------------------------------------------------------------------

/** How the provider applied the job's limits (in yellow when it does not enforce them), else what was asked. */
function formatResources(job: Job): string | undefined {
  const asked = [];
  const cpuMillis = job.resources?.cpuMillis ?? 0;
  const memoryMb = job.resources?.memoryMb ?? 0;
  if (cpuMillis > 0) asked.push(`cpu ${cpuMillis / 1000}`);
  if (memoryMb > 0) asked.push(`memory ${memoryMb} MiB`);
  if (asked.length === 0) return undefined;
  const applied = job.resourcesApplied;
  if (!applied) return asked.join(", ");
  if (/\bNOT enforced\b/.test(applied)) return pc.yellow(applied);
  return applied.startsWith("memory") || applied.startsWith("cpu") ? applied : `${asked.join(", ")}: ${applied}`;
}

/** kubectl's taint syntax: key=value:Effect, key:Effect (Exists), * (every taint). */
function formatToleration(t: Toleration): string {
  if (!t.key && t.operator === "Exists") return "*";
  const head = t.operator === "Exists" ? t.key : `${t.key}=${t.value}`;
  const seconds = t.tolerationSeconds === undefined ? "" : `:${t.tolerationSeconds}`;
  return t.effect ? `${head}:${t.effect}${seconds}` : head;
}
