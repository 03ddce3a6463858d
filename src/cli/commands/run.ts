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
import { collectEnv, collectSecret, parseInteger, parseIsoTime, parsePositiveInt } from "../options.js";
import { collectNodeSelector, collectToleration, parseCpuCores, parseMemoryMb, parsePullPolicy, type TolerationOption } from "../resource-options.js";

interface RunOptions {
  provider?: string;
  env?: Record<string, string>;
  timeout?: number;
  image?: string;
  maxAttempts?: number;
  script?: string;
  detach?: boolean;
  json?: boolean;
  retryOnExit?: string;
  secret?: Record<string, string>;
  secretFile?: Record<string, string>;
  priority?: number;
  queueTimeout?: number;
  runAt?: number;
  delay?: number;
  traceparent?: string;
  // Resources and provider details.
  cpu?: number;
  memory?: number;
  pull?: string;
  nodeSelector?: Record<string, string>;
  toleration?: TolerationOption[];
  notify?: string[];
}

const DASH_HINT = `put the job's command after "--", e.g. hodei run -- ls -la`;

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("submit a job, stream its output and exit with its exit code")
    .argument("[command...]", 'the command to run, after "--" (one argument is run with sh -c)')
    .option("--provider <name>", "provider to run on (default: the server's default provider)")
    .option("-e, --env <KEY=VALUE>", "environment variable for the job (repeatable)", collectEnv)
    .option("--timeout <seconds>", "kill the job after this many seconds (default: the server's)", parsePositiveInt)
    .option("--image <image>", "container image (docker and kubernetes providers)")
    .option("--max-attempts <n>", "attempts allowed for retryable failures: a lost worker, or an exit code given to --retry-on-exit (default 1)", parsePositiveInt)
    .option("--script <file>", 'run this shell script instead of a command ("-" reads stdin)')
    .option("--retry-on-exit <codes>", 'retry the job on a new worker when the command exits with one of these codes ("3,4") or with any non-zero code ("any"); needs --max-attempts 2 or more')
    .option("--cpu <cores>", "CPU limit in cores, e.g. 0.5 (the local provider applies it where a cgroup allows, and says so when it cannot)", parseCpuCores)
    .option("--memory <MiB>", "memory limit in MiB, e.g. 512; a job that exceeds it is killed and fails as out of memory", parseMemoryMb)
    .option("--pull <policy>", "when to pull --image: always, if-not-present (default) or never (docker and kubernetes)", parsePullPolicy)
    .option("--node-selector <KEY=VALUE>", "kubernetes: a node label the job's pod must be scheduled on (repeatable)", collectNodeSelector)
    .option("--toleration <KEY[=VALUE][:EFFECT[:SECONDS]]>", "kubernetes: a taint the job's pod tolerates, e.g. dedicated=hodei:NoSchedule, or * (repeatable)", collectToleration)
    .option("--detach", "print the job id and exit without waiting")
    .option("--json", "print the finished job (or with --detach, the submitted job) as JSON (the job's output then goes to stderr)")
    .option("--secret <NAME=VALUE>", "secret environment variable: never shown again, *** in the log (repeatable; note that VALUE is in this command line)", collectSecret)
    .option("--secret-file <NAME=PATH>", "secret environment variable read from a file, without one trailing newline (repeatable)", collectSecret)
    .option("--priority <n>", "higher runs first, -100 to 100 (default 0)", parseInteger)
    .option("--queue-timeout <seconds>", "end the job timed_out if it has not started this long after it is due (default: the server's HODEI_QUEUE_TIMEOUT)", parsePositiveInt)
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
  if (options.script !== undefined && commandArgs.length > 0) {
    throw new CliError('give either a command after "--" or --script FILE, not both', USAGE_EXIT_CODE);
  }
  if (options.script === undefined && commandArgs.length === 0) {
    throw new CliError(`nothing to run: ${DASH_HINT}, or use --script FILE`, USAGE_EXIT_CODE);
  }
  if (options.runAt !== undefined && options.delay !== undefined) throw new CliError("give either --run-at or --delay, not both", USAGE_EXIT_CODE);
  const script = options.script === undefined ? "" : readScript(options.script);
  if (options.script !== undefined && script.trim() === "") {
    throw new CliError(`the script ${options.script} is empty`, USAGE_EXIT_CODE);
  }
  const { hodei, serverUrl } = connect(command);
  const job = await hodei.submit({
    command: commandArgs,
    script,
    provider: options.provider ?? "",
    env: options.env ?? {},
    timeoutSeconds: options.timeout ?? 0,
    maxAttempts: options.maxAttempts ?? 0,
    image: options.image ?? "",
    retryOnExitCodes: options.retryOnExit ?? "",
    secrets: readSecrets(options),
    priority: options.priority ?? 0,
    queueTimeoutSeconds: options.queueTimeout ?? 0,
    runAt: options.runAt === undefined ? undefined : timestampFromMs(options.runAt),
    delaySeconds: options.delay ?? 0,
    traceparent: options.traceparent ?? "",
    // Resources and provider details.
    resources: { cpuMillis: options.cpu ?? 0, memoryMb: options.memory ?? 0 },
    pullPolicy: options.pull ?? "",
    nodeSelector: options.nodeSelector ?? {},
    tolerations: options.toleration ?? [],
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

function readScript(path: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new CliError(`cannot read script ${path}: ${reason}`, USAGE_EXIT_CODE, { cause: err });
  }
}
