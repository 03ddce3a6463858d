/**
 * The options that describe a job (what `hodei run` takes: provider, env, timeout, image, retries,
 * resources, queue settings, labels), as one set a command adds with addJobSpecOptions and turns
 * into a SubmitJobRequest with jobRequestOf. `hodei schedule create` uses it for its template. The
 * parsers are those of options.ts and resource-options.ts; the server validates the values and
 * names the field.
 */
import { readFileSync } from "node:fs";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import type { SubmitJobRequestSchema } from "../gen/hodei/v1/api_pb.js";
import { CliError, USAGE_EXIT_CODE } from "./errors.js";
import { collectEnv, collectLabels, parseInteger, parsePositiveInt } from "./options.js";
import { collectNodeSelector, collectToleration, parseCpuCores, parseMemoryMb, parsePullPolicy, type TolerationOption } from "./resource-options.js";

export interface JobSpecOptions {
  provider?: string;
  env?: Record<string, string>;
  timeout?: number;
  image?: string;
  maxAttempts?: number;
  script?: string;
  retryOnExit?: string;
  priority?: number;
  queueTimeout?: number;
  label?: string[];
  cpu?: number;
  memory?: number;
  pull?: string;
  nodeSelector?: Record<string, string>;
  toleration?: TolerationOption[];
}

export function addJobSpecOptions(command: Command): Command {
  return command
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
    .option("--priority <n>", "higher runs first, -100 to 100 (default 0)", parseInteger)
    .option("--queue-timeout <seconds>", "end the job timed_out if it has not started this long after it is due (default: the server's HODEI_QUEUE_TIMEOUT)", parsePositiveInt)
    .option("--label <KEY=VALUE>", "a label of the job (repeatable)", collectLabels);
}

/** The job the options and the command after "--" describe; `dashHint` says how to give a command. */
export function jobRequestOf(commandArgs: string[], options: JobSpecOptions, dashHint: string): MessageInitShape<typeof SubmitJobRequestSchema> {
  if (options.script !== undefined && commandArgs.length > 0) {
    throw new CliError('give either a command after "--" or --script FILE, not both', USAGE_EXIT_CODE);
  }
  if (options.script === undefined && commandArgs.length === 0) throw new CliError(`nothing to run: ${dashHint}, or use --script FILE`, USAGE_EXIT_CODE);
  const script = options.script === undefined ? "" : readScript(options.script);
  if (options.script !== undefined && script.trim() === "") throw new CliError(`the script ${options.script} is empty`, USAGE_EXIT_CODE);
  const labels = Object.fromEntries((options.label ?? []).map((term) => [term.slice(0, term.indexOf("=")), term.slice(term.indexOf("=") + 1)]));
  return {
    command: commandArgs,
    script,
    provider: options.provider ?? "",
    env: options.env ?? {},
    timeoutSeconds: options.timeout ?? 0,
    maxAttempts: options.maxAttempts ?? 0,
    image: options.image ?? "",
    retryOnExitCodes: options.retryOnExit ?? "",
    priority: options.priority ?? 0,
    queueTimeoutSeconds: options.queueTimeout ?? 0,
    labels,
    resources: { cpuMillis: options.cpu ?? 0, memoryMb: options.memory ?? 0 },
    pullPolicy: options.pull ?? "",
    nodeSelector: options.nodeSelector ?? {},
    tolerations: options.toleration ?? [],
  };
}

function readScript(path: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new CliError(`cannot read script ${path}: ${reason}`, USAGE_EXIT_CODE, { cause: err });
  }
}
