/** `hodei workers`: the workers the server knows of (live ones, or with --all also destroyed ones). */
import type { Command } from "commander";
import { WorkerSchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { NONE, colorState } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { printTable } from "../table.js";

export function registerWorkersCommand(program: Command): void {
  program
    .command("workers")
    .description("list workers")
    .option("--all", "include destroyed workers")
    .option("--limit <n>", "at most this many workers", parsePositiveInt)
    .option("--json", "print an array of worker objects")
    .action(async (options: { all?: boolean; limit?: number; json?: boolean }, command: Command) => {
      const { client } = connect(command);
      const { workers } = await client.listWorkers({ all: options.all === true, limit: options.limit ?? 0 });
      if (options.json) {
        printJson(workers.map((worker) => messageJson(WorkerSchema, worker)));
        return;
      }
      printTable(
        ["ID", "NAME", "PROVIDER", "PROVIDER_RESOURCE_ID", "STATE", "JOB", "ATTEMPT"],
        workers.map((w) => [
          w.id,
          w.name || NONE,
          w.provider,
          w.providerResourceId || NONE,
          colorState(w.state),
          w.jobId || NONE,
          w.attempt ? String(w.attempt) : NONE,
        ]),
        options.all ? "no workers" : "no live workers (--all includes destroyed ones)",
      );
    });
}
