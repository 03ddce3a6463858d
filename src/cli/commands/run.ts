/**
 * `hodei run`: submit a job, stream its output to this terminal, and exit with its exit code.
 * The first Ctrl-C asks the server to cancel the job and keeps streaming so its last words are
 * shown; a second one stops waiting (exit 130) and leaves the job to the server.
 */
import { readFileSync } from "node:fs";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { JobSchema, type Job } from "../../gen/hodei/v1/api_pb.js";
import type { HodeiClient } from "../../client/client.js";
import { connect } from "../client.js";
import { CliError, USAGE_EXIT_CODE, describeError, formatUsageError } from "../errors.js";
import { stderrColors } from "../format.js";
import { exitCodeOf, reportJobEnd } from "../job-exit.js";
import { messageJson, printJson } from "../json.js";
import { logWriter, noteRetry } from "../log-output.js";
import { addJobSpecOptions, type JobSpecOptions, jobRequestOf } from "../job-spec-options.js";
import { collectSecret, parseIsoTime, parsePositiveInt } from "../options.js";

interface RunOptions extends JobSpecOptions {
  detach?: boolean;
  json?: boolean;
  secret?: Record<string, string>;
  secretFile?: Record<string, string>;
  runAt?: number;
  delay?: number;
  traceparent?: string;
  notify?: string[];
}

const DASH_HINT = `put the job's command after "--", e.g. hodei run -- ls -la`;

export function registerRunCommand(program: Command): void {
  const command = program
    .command("run")
    .description("submit a job, stream its output and exit with its exit code")
    .argument("[command...]", 'the command to run, after "--" (one argument is run with sh -c)');
  addJobSpecOptions(command)
    .option("--detach", "print the job id and exit without waiting")
    .option("--json", "print the finished job (or with --detach, the submitted job) as JSON (the job's output then goes to stderr)")
    .option("--secret <NAME=VALUE>", "secret environment variable: never shown again, *** in the log (repeatable; note that VALUE is in this command line)", collectSecret)
    .option("--secret-file <NAME=PATH>", "secret environment variable read from a file, without one trailing newline (repeatable)", collectSecret)
    .option("--run-at <time>", "start no earlier than this ISO 8601 time, e.g. 2030-01-02T03:04:05Z (at most a year ahead)", parseIsoTime)
    .option("--delay <seconds>", "start no earlier than this many seconds from now", parsePositiveInt)
    .option("--traceparent <traceparent>", "a W3C traceparent (00-<trace id>-<span id>-<flags>) of your span: the job's trace becomes its child, and the command gets TRACEPARENT")
    .option("--notify <url>", "POST a JSON webhook to this http(s) URL when the job ends, signed when the server has HODEI_WEBHOOK_SECRET (repeatable, at most 4)", (url: string, previous: string[] = []) => [...previous, url])
    .configureOutput({
      outputError: (text, write) => write(formatUsageError(text, text.includes("unknown option") ? DASH_HINT : undefined)),
    })
    .action(async (commandArgs: string[], options: RunOptions, command: Command) => {
      process.exitCode = await run(commandArgs, options, command);
    });
}

async function run(commandArgs: string[], options: RunOptions, command: Command): Promise<number> {
  const request = jobRequestOf(commandArgs, options, DASH_HINT);
  if (options.runAt !== undefined && options.delay !== undefined) throw new CliError("give either --run-at or --delay, not both", USAGE_EXIT_CODE);
  const { hodei, serverUrl } = connect(command);
  const job = await hodei.submit({
    ...request,
    secrets: readSecrets(options),
    runAt: options.runAt === undefined ? undefined : timestampFromMs(options.runAt),
    delaySeconds: options.delay ?? 0,
    traceparent: options.traceparent ?? "",
    notify: options.notify ?? [],
  });

  if (options.detach) {
    if (options.json) printJson(messageJson(JobSchema, job));
    else process.stdout.write(`${job.id}\n`);
    return 0;
  }
  const isChatty = !options.json && process.stderr.isTTY === true;
  if (isChatty) process.stderr.write(stderrColors().dim(`job ${job.id} ${job.state} on ${job.provider || "the default provider"}\n`));

  const finished = await followUntilEnd(hodei, job.id, serverUrl, options.json === true);
  if (options.json) printJson(messageJson(JobSchema, finished));
  reportJobEnd(finished, isChatty);
  return exitCodeOf(finished);
}

/** Streams the job's logs to its end, cancelling it on the first Ctrl-C and leaving on the second. */
async function followUntilEnd(hodei: HodeiClient, jobId: string, serverUrl: string, isJson: boolean): Promise<Job> {
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) {
      process.stderr.write(`hodei: stopped waiting; job ${jobId} is left to the server\n`);
      process.exit(130);
    }
    process.stderr.write(`hodei: canceling job ${jobId} (Ctrl-C again to stop waiting)\n`);
    hodei.cancel(jobId).catch((err: unknown) => {
      process.stderr.write(`hodei: could not cancel job ${jobId}: ${describeError(err, serverUrl).message}\n`);
    });
  };
  process.on("SIGINT", onSigint);
  try {
    return await hodei.wait(jobId, {
      onLog: logWriter({ isStdoutReserved: isJson }),
      onRetry: noteRetry(serverUrl),
    });
  } catch (err) {
    const { message } = describeError(err, serverUrl);
    throw new CliError(`${message}\nhodei: job ${jobId} may still be running; resume with "hodei logs -f ${jobId}"`, 1, { cause: err });
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** --secret values and --secret-file contents, by name; a name in both is refused. */
function readSecrets(options: RunOptions): Record<string, string> {
  const secrets = { ...options.secret };
  for (const [name, path] of Object.entries(options.secretFile ?? {})) {
    if (Object.hasOwn(secrets, name)) throw new CliError(`secret ${name} is given by both --secret and --secret-file`, USAGE_EXIT_CODE);
    let content: string;
    try {
      content = readFileSync(path, "utf8");
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
      throw new CliError(`cannot read the file of secret ${name}, ${path}: ${reason}`, USAGE_EXIT_CODE, { cause: err });
    }
    // `echo token > file` adds a newline that is not part of the secret.
    secrets[name] = content.replace(/\r?\n$/, "");
  }
  return secrets;
}

