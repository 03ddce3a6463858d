/**
 * `hodei keys`: API keys, through the API's KeyService (the server checks the caller holds admin).
 *   keys create --name NAME --scope SCOPES   prints the key, the only time it is ever shown
 *   keys ls [--all]                          names, scopes, when created and last used; never a key
 *   keys revoke NAME                         the key stops working at once
 */
import type { Command } from "commander";
import { ApiKeySchema } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { NONE, formatRelative, stderrColors } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { printTable } from "../table.js";

const SCOPE_HELP = "read, submit, admin, provider:local, provider:docker, provider:kubernetes (comma-separated or repeated; admin implies all)";

function collectScopes(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

export function registerKeysCommand(program: Command): void {
  const keys = program.command("keys").description("manage API keys (needs an admin key)");

  keys
    .command("create")
    .description("create an API key and print it (it is shown only this once)")
    .requiredOption("--name <name>", "the key's name, recorded on the jobs it submits (never reused)")
    .requiredOption("--scope <scopes>", SCOPE_HELP, collectScopes)
    .option("--json", 'print {"name","key","scopes"}')
    .action(async (options: { name: string; scope: string[]; json?: boolean }, command: Command) => {
      const { keys: client } = connect(command);
      const { apiKey, key } = await client.createKey({ name: options.name, scopes: options.scope });
      const scopes = apiKey?.scopes ?? [];
      if (options.json) {
        printJson({ name: options.name, key, scopes });
        return;
      }
      process.stdout.write(`${key}\n`);
      process.stderr.write(
        stderrColors().dim(`key "${options.name}" created with scopes ${scopes.join(",")}: store it now, it is not shown again (clients send it as "Authorization: Bearer KEY"; the CLI reads HODEI_TOKEN)\n`),
      );
    });

  keys
    .command("ls", { isDefault: true })
    .description("list API keys (never the keys themselves)")
    .option("--all", "include revoked keys")
    .option("--json", "print an array of key objects")
    .action(async (options: { all?: boolean; json?: boolean }, command: Command) => {
      const { keys: client } = connect(command);
      const { keys: list } = await client.listKeys({ all: options.all === true });
      if (options.json) {
        printJson(list.map((k) => messageJson(ApiKeySchema, k)));
        return;
      }
      const nowMs = Date.now();
      printTable(
        ["NAME", "SCOPES", "CREATED", "LAST USED", ...(options.all ? ["REVOKED"] : [])],
        list.map((k) => [
          k.name,
          k.scopes.join(","),
          formatRelative(k.createdAt, nowMs),
          k.lastUsedAt ? formatRelative(k.lastUsedAt, nowMs) : NONE,
          ...(options.all ? [k.revokedAt ? formatRelative(k.revokedAt, nowMs) : NONE] : []),
        ]),
        options.all ? "no keys" : "no working keys (--all includes revoked ones)",
      );
    });

  keys
    .command("revoke")
    .description("revoke an API key: it stops working at once")
    .argument("<name>", "the key's name")
    .option("--json", "print the revoked key object")
    .action(async (name: string, options: { json?: boolean }, command: Command) => {
      const { keys: client } = connect(command);
      const key = await client.revokeKey({ name });
      if (options.json) printJson(messageJson(ApiKeySchema, key));
      else process.stdout.write(`key ${key.name} revoked\n`);
    });
}
