/**
 * `hodei providers`: the providers the server has enabled, their health, worker capacity and
 * orphans (labelled resources with no live worker), or why the orphans could not be counted.
 */
import type { Command } from "commander";
import pc from "picocolors";
import { ProviderSchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { NONE } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { printTable } from "../table.js";

export function registerProvidersCommand(program: Command): void {
  program
    .command("providers")
    .description("list providers")
    .option("--json", "print an array of provider objects")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { client } = connect(command);
      const { providers } = await client.listProviders({});
      if (options.json) {
        printJson(providers.map((provider) => messageJson(ProviderSchema, provider)));
        return;
      }
      printTable(
        ["NAME", "DEFAULT", "HEALTHY", "DETAIL", "WORKERS", "ORPHANS"],
        providers.map((p) => [
          p.name,
          p.isDefault ? "yes" : "",
          p.healthy ? pc.green("yes") : pc.red("no"),
          p.detail || NONE,
          `${p.activeWorkers}/${p.maxWorkers || "∞"}`,
          // An unknown count is never shown as 0: "?" here, the reason below the table.
          p.orphansError ? pc.yellow("?") : String(p.orphans),
        ]),
        "no providers",
      );
      for (const p of providers.filter((p) => p.orphansError)) process.stdout.write(`${pc.yellow("?")} ${p.name} orphans ${p.orphansError}\n`);
    });
}
