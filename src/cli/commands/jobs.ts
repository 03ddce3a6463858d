/**
 * `hodei jobs` (alias `jobs ls`): list jobs, newest first, with filters and paging; and
 * `hodei jobs get ID`: one job in detail.
 */
import type { Command } from "commander";
import { JobSchema, type Job } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { explainJobNotFound } from "../errors.js";
import { NONE, colorState, formatCommand, formatJobDuration, formatRelative, stderrColors, truncate } from "../format.js";
import { printJobDetails } from "../job-details.js";
import { messageJson, printJson } from "../json.js";
import { collectLabels, collectStates, parsePositiveInt } from "../options.js";
import { printTable } from "../table.js";

interface ListOptions {
  state?: string[];
  provider?: string;
  limit?: number;
  pageToken?: string;
  json?: boolean;
  label?: string[];
}

export function registerJobsCommand(program: Command): void {
  const jobs = program.command("jobs").description("list jobs, or show one (jobs get ID)");

  jobs
    .command("ls", { isDefault: true })
    .description("list jobs, newest first")
    .option("--state <states>", "only jobs in these states (repeatable or comma-separated)", collectStates)
    .option("--provider <name>", "only jobs on this provider")
    .option("--limit <n>", "page size (server default 50, at most 500)", parsePositiveInt)
    .option("--page-token <token>", "the next page, as printed by a previous listing")
    .option("--json", "print an array of job objects")
    .option("--label <KEY=VALUE>", "only jobs with this label (repeatable: jobs with all of them)", collectLabels)
    .action(async (options: ListOptions, command: Command) => {
      const { hodei } = connect(command);
      const response = await hodei.list({
        states: options.state ?? [],
        provider: options.provider ?? "",
        limit: options.limit ?? 0,
        pageToken: options.pageToken ?? "",
        labelSelector: (options.label ?? []).join(","),
      });
      if (options.json) printJson(response.jobs.map((job) => messageJson(JobSchema, job)));
      else printJobTable(response.jobs, Date.now());
      if (response.nextPageToken) {
        process.stderr.write(stderrColors().dim(`more jobs: repeat with --page-token ${response.nextPageToken}\n`));
      }
    });

  jobs
    .command("get")
    .description("show one job: state, exit code, timeline and attempts")
    .argument("<id>", "job id")
    .option("--json", "print the job object")
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const { hodei } = connect(command);
      const job = await hodei.get(id).catch(explainJobNotFound(id));
      if (options.json) printJson(messageJson(JobSchema, job));
      else printJobDetails(job, Date.now());
    });
}

function printJobTable(jobs: Job[], nowMs: number): void {
  printTable(
    ["ID", "STATE", "PROVIDER", "EXIT", "ATTEMPTS", "CREATED", "DURATION", "COMMAND"],
    jobs.map((job) => [
      job.id,
      colorState(job.state),
      job.provider || NONE,
      job.exitCode === undefined ? NONE : String(job.exitCode),
      job.maxAttempts > 1 ? `${job.attempts - job.uncountedAttempts}/${job.maxAttempts}` : String(job.attempts - job.uncountedAttempts),
      formatRelative(job.createdAt, nowMs),
      formatJobDuration(job, nowMs),
      truncate(formatCommand(job), 60),
    ]),
    "no jobs",
  );
}
