/**
 * The `hodei` command line: global options, the commands, and the one place where failures become
 * output. Every failure ends as a single `hodei: <message>` line on stderr and an exit code (1 for
 * a failed request, 2 for a command line that cannot be accepted); `run` exits with its job's code.
 */
import { Command, CommanderError } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { serverUrlOf } from "./client.js";
import { registerCancelCommand } from "./commands/cancel.js";
import { registerDoctorCommand } from "./commands/doctor.js";
import { registerImageCommand } from "./commands/image.js";
import { registerJobsCommand } from "./commands/jobs.js";
import { registerKeysCommand } from "./commands/keys.js";
import { registerLogsCommand } from "./commands/logs.js";
import { registerProvidersCommand } from "./commands/providers.js";
import { registerRerunCommand } from "./commands/rerun.js";
import { registerRunCommand } from "./commands/run.js";
import { registerScheduleCommand } from "./commands/schedule.js";
import { registerServerCommand } from "./commands/server.js";
import { registerTokensCommand } from "./commands/tokens.js";
import { registerVerifyCommand } from "./commands/verify.js";
import { registerWorkersCommand } from "./commands/workers.js";
import { USAGE_EXIT_CODE, describeError, formatUsageError } from "./errors.js";

const EXAMPLES = `
Examples:
  hodei server                                  run the control plane
  hodei image build                             build the Docker worker image (offline, no registry)
  hodei run -- echo hello                       run a command, stream its output, exit with its code
  hodei run -e NAME=world -- sh -c 'echo hi $NAME'
  hodei run --detach --timeout 600 -- make test
  hodei jobs --state running,queued
  hodei logs -f JOB_ID
  hodei jobs get JOB_ID --json
  hodei run --max-attempts 3 --retry-on-exit 75 -- ./flaky.sh    retry exit code 75 on a new worker
  hodei rerun JOB_ID                            run a finished job again (prints the new job's id)
  hodei schedule create nightly --cron "0 3 * * *" --timezone Europe/Madrid -- ./backup.sh
  hodei doctor                                  check every provider with a probe worker
  hodei verify --providers docker               run the test jobs and check tokens and cleanup
  hodei keys create --name ci --scope submit,provider:local    an API key (printed once)`;

export function buildProgram(): Command {
  const program = new Command("hodei")
    .description("Run jobs on ephemeral workers: local processes, Docker or Kubernetes.")
    .version(pkg.version, "-V, --version")
    .option("--server <url>", "Hodei server URL (default: $HODEI_SERVER_URL or http://127.0.0.1:7070)")
    .option(
      "--token <key>",
      "API key (default: $HODEI_TOKEN; for a server on this machine, <data dir>/admin.key). Prefer HODEI_TOKEN: other users can see a command line",
    )
    .option("--ca-cert <file>", "CA certificate (PEM) that verifies an https:// server (default: $HODEI_TLS_CA, else the system's roots)")
    .option("--no-color", "plain output (also: NO_COLOR=1)")
    .configureHelp({ showGlobalOptions: true })
    .addHelpText("after", EXAMPLES)
    // Settings below are inherited by every command registered after them.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(formatUsageError(text)) });

  registerServerCommand(program);
  registerImageCommand(program);
  registerRunCommand(program);
  registerJobsCommand(program);
  registerLogsCommand(program);
  registerCancelCommand(program);
  registerRerunCommand(program);
  registerScheduleCommand(program);
  registerWorkersCommand(program);
  registerTokensCommand(program);
  registerProvidersCommand(program);
  registerKeysCommand(program);
  registerDoctorCommand(program);
  registerVerifyCommand(program);
  return program;
}

/** Runs one command line (process.argv form). Never rejects: failures set process.exitCode. */
export async function runCli(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed the help or the usage error.
      process.exitCode = err.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
      return;
    }
    const report = describeError(err, serverUrlOf(program));
    process.stderr.write(`hodei: ${report.message}\n`);
    if (report.stack) process.stderr.write(`${report.stack}\n`);
    process.exitCode = report.exitCode;
  }
}
