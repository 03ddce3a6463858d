/**
 * `hodei schedule`: jobs submitted on a cron schedule by the server (ScheduleService).
 *   schedule create NAME --cron EXPR [--timezone TZ] [--missed skip|run-once]
 *                   [--concurrency allow|forbid] [--paused] [job options] -- CMD
 *   schedule ls | get NAME | pause NAME | resume NAME | rm NAME      (each with --json)
 * The job options are `hodei run`'s (job-spec-options.ts), but secrets: a schedule cannot hold them.
 * Each command is one call of hodei/client's `schedules` (src/client/schedules.ts).
 */
import type { Command } from "commander";
import { type Schedule, ScheduleSchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { CliError, USAGE_EXIT_CODE, formatUsageError } from "../errors.js";
import { NONE, formatCommand, formatRelative, formatTime, stderrColors, truncate } from "../format.js";
import { addJobSpecOptions, type JobSpecOptions, jobRequestOf } from "../job-spec-options.js";
import { messageJson, printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { printFields, printTable } from "../table.js";

interface CreateOptions extends JobSpecOptions {
  cron: string;
  timezone?: string;
  missed?: string;
  concurrency?: string;
  paused?: boolean;
  json?: boolean;
  secret?: boolean;
  secretFile?: boolean;
}

const DASH_HINT = `put the job's command after "--", e.g. hodei schedule create nightly --cron "0 3 * * *" -- ./backup.sh`;

export function registerScheduleCommand(program: Command): void {
  const schedule = program.command("schedule").description("jobs the server submits on a cron schedule");

  addJobSpecOptions(
    schedule
      .command("create")
      .description("create a schedule: the server submits the job at every tick of the cron expression")
      .argument("<name>", "lowercase letters, digits and -, at most 63")
      .argument("[command...]", 'the command to run, after "--" (one argument is run with sh -c)')
      .requiredOption("--cron <expr>", 'when: 5 fields (minute hour day month weekday, e.g. "*/5 * * * *") or 6 with seconds first')
      .option("--timezone <tz>", "IANA time zone the expression is read in, e.g. Europe/Madrid (default UTC)")
      .option("--missed <policy>", "ticks missed while the server was down: skip (default) or run-once (one job for the latest)")
      .option("--concurrency <policy>", "allow (default), or forbid: skip a tick while the previous job has not ended")
      .option("--paused", "create it paused (hodei schedule resume NAME starts it)")
      // Taken only to be refused with the reason, without echoing the value.
      .option("--secret <NAME=VALUE>", "not accepted: a schedule cannot hold secrets", () => true)
      .option("--secret-file <NAME=PATH>", "not accepted: a schedule cannot hold secrets", () => true),
  )
    .option("--json", "print the schedule object")
    .configureOutput({ outputError: (text, write) => write(formatUsageError(text, text.includes("unknown option") ? DASH_HINT : undefined)) })
    .action(async (name: string, commandArgs: string[], options: CreateOptions, command: Command) => {
      if (options.secret || options.secretFile) {
        // A schedule keeps its template for as long as it exists; secrets are kept only while their job may run.
        throw new CliError("a schedule cannot hold secrets (it keeps its template indefinitely); have the job's command read them from a file or a credential store", USAGE_EXIT_CODE);
      }
      const template = jobRequestOf(commandArgs, options, DASH_HINT);
      const { schedules } = connect(command).hodei;
      const created = await schedules.create({
        name,
        cron: options.cron,
        timezone: options.timezone,
        missed: options.missed,
        concurrency: options.concurrency,
        paused: options.paused,
        template,
      });
      if (options.json) printJson(messageJson(ScheduleSchema, created));
      else process.stdout.write(`schedule ${created.name} created; ${created.paused ? "paused" : `next run ${formatTime(created.nextRunAt)}`}\n`);
    });

  schedule
    .command("ls", { isDefault: true })
    .description("list schedules by name")
    .option("--limit <n>", "page size (server default 100, at most 500)", parsePositiveInt)
    .option("--page-token <token>", "the next page, as printed by a previous listing")
    .option("--json", "print an array of schedule objects")
    .action(async (options: { limit?: number; pageToken?: string; json?: boolean }, command: Command) => {
      const { schedules } = connect(command).hodei;
      const response = await schedules.list({ limit: options.limit, pageToken: options.pageToken });
      if (options.json) printJson(response.schedules.map((s) => messageJson(ScheduleSchema, s)));
      else printScheduleTable(response.schedules, Date.now());
      if (response.nextPageToken) process.stderr.write(stderrColors().dim(`more schedules: repeat with --page-token ${response.nextPageToken}\n`));
    });

  schedule
    .command("get")
    .description("show one schedule")
    .argument("<name>", "schedule name")
    .option("--json", "print the schedule object")
    .action(async (name: string, options: { json?: boolean }, command: Command) => {
      const { schedules } = connect(command).hodei;
      const found = await schedules.get(name);
      if (options.json) printJson(messageJson(ScheduleSchema, found));
      else printScheduleDetails(found, Date.now());
    });

  for (const [verb, description, done] of [
    ["pause", "pause a schedule: its ticks fire nothing until resumed", "paused"],
    ["resume", "resume a paused schedule from its next tick (ticks while paused are not fired)", "resumed"],
    ["rm", "remove a schedule (the jobs it submitted stay)", "removed"],
  ] as const) {
    schedule
      .command(verb)
      .description(description)
      .argument("<name>", "schedule name")
      .option("--json", "print the schedule object")
      .action(async (name: string, options: { json?: boolean }, command: Command) => {
        const { schedules } = connect(command).hodei;
        const result = verb === "pause" ? await schedules.pause(name) : verb === "resume" ? await schedules.resume(name) : await schedules.remove(name);
        if (options.json) printJson(messageJson(ScheduleSchema, result));
        else process.stdout.write(`schedule ${result.name} ${done}${verb === "resume" ? `; next run ${formatTime(result.nextRunAt)}` : ""}\n`);
      });
  }
}

function printScheduleTable(schedules: Schedule[], nowMs: number): void {
  printTable(
    ["NAME", "CRON", "TIMEZONE", "NEXT RUN", "LAST JOB", "PAUSED", "COMMAND"],
    schedules.map((s) => [
      s.name,
      s.cron,
      s.timezone || "UTC",
      s.paused ? NONE : formatRelative(s.nextRunAt, nowMs),
      s.lastJobId || NONE,
      s.paused ? "yes" : "no",
      truncate(s.template ? formatCommand(s.template) : NONE, 50),
    ]),
    "no schedules",
  );
}

function printScheduleDetails(s: Schedule, nowMs: number): void {
  printFields([
    ["name", s.name],
    ["cron", `${s.cron} (${s.timezone || "UTC"})`],
    ["command", s.template ? formatCommand(s.template) : NONE],
    ["provider", s.template?.provider || NONE],
    ["missed", s.missed],
    ["concurrency", s.concurrency],
    ["paused", s.paused ? "yes" : "no"],
    ["next run", s.paused ? `${formatTime(s.nextRunAt)} (paused)` : `${formatTime(s.nextRunAt)} (${formatRelative(s.nextRunAt, nowMs)})`],
    ["last run", s.lastRunAt ? `${formatTime(s.lastRunAt)}, job ${s.lastJobId}` : NONE],
    ["fired", String(s.firedTicks)],
    ["skipped", s.skippedTicks > 0n ? `${s.skippedTicks} (last ${formatTime(s.lastSkippedAt)}: ${s.lastSkipReason})` : "0"],
    ["created", `${formatTime(s.createdAt)}${s.createdBy ? ` by ${s.createdBy}` : ""}`],
    ["jobs", `hodei jobs --label hodei.io/schedule=${s.name}`],
  ]);
}
