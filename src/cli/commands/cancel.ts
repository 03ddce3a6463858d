/** `hodei cancel ID`: ask the server to cancel a job; its worker is stopped by the server. */
import type { Command } from "commander";
import { JobSchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { explainJobNotFound } from "../errors.js";
import { colorState, isEnded } from "../format.js";
import { messageJson, printJson } from "../json.js";

export function registerCancelCommand(program: Command): void {
  program
    .command("cancel")
    .description("cancel a job")
    .argument("<id>", "job id")
    .option("--json", "print the job object after the request")
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const { hodei } = connect(command);
      const job = await hodei.cancel(id).catch(explainJobNotFound(id));
      if (options.json) printJson(messageJson(JobSchema, job));
      else if (job.state === "canceled") process.stdout.write(`job ${job.id} ${colorState(job.state)}\n`);
      else if (isEnded(job.state)) process.stdout.write(`job ${job.id} had already ended: ${colorState(job.state)}\n`);
      else process.stdout.write(`job ${job.id}: cancel requested (now ${colorState(job.state)})\n`);
    });
}
