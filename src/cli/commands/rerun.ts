/**
 * `hodei rerun ID`: submit a copy of a finished job (same spec, a new id; the server records which
 * job it reruns) and print the new job's id, as `run --detach` does, so that scripts can follow it.
 */
import type { Command } from "commander";
import { JobSchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { explainJobNotFound } from "../errors.js";
import { stderrColors } from "../format.js";
import { messageJson, printJson } from "../json.js";

export function registerRerunCommand(program: Command): void {
  program
    .command("rerun")
    .description("submit a copy of a finished job as a new job and print its id")
    .argument("<id>", "id of the finished job to run again")
    .option("--json", "print the new job object")
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const { hodei } = connect(command);
      const job = await hodei.rerun(id).catch(explainJobNotFound(id));
      if (options.json) {
        printJson(messageJson(JobSchema, job));
        return;
      }
      process.stdout.write(`${job.id}\n`);
      if (process.stderr.isTTY) process.stderr.write(stderrColors().dim(`job ${job.id} ${job.state}: a rerun of ${id}; follow it with "hodei logs -f ${job.id}"\n`));
    });
}
