/**
 * `hodei logs ID`: a job's output so far, or with --follow until the job ends (resuming after the
 * last line seen if the connection drops). stdout lines go to stdout, stderr and system lines to
 * stderr, as the raw bytes the job wrote; with --json, one LogEntry object per line on stdout
 * (its data base64-encoded).
 */
import type { Command } from "commander";
import { connect } from "../client.js";
import { explainJobNotFound } from "../errors.js";
import { logWriter, noteRetry } from "../log-output.js";

export function registerLogsCommand(program: Command): void {
  program
    .command("logs")
    .description("print a job's output")
    .argument("<id>", "job id")
    .option("-f, --follow", "keep printing new output until the job ends")
    .option("--json", "one JSON object per log entry per line")
    .action(async (id: string, options: { follow?: boolean; json?: boolean }, command: Command) => {
      const { hodei, serverUrl } = connect(command);
      const write = logWriter({ isJson: options.json });
      try {
        for await (const entry of hodei.logs(id, { follow: options.follow === true, onRetry: noteRetry(serverUrl) })) write(entry);
      } catch (err) {
        explainJobNotFound(id)(err);
      }
    });
}
