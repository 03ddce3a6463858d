/**
 * `hodei tokens`: the OTP tokens minted for workers, newest first. Only what each was minted for is
 * shown (provider, resource, job, worker, times); the secret is never stored, so never shown.
 */
import type { Command } from "commander";
import pc from "picocolors";
import { OtpTokenSchema, type OtpToken } from "../../gen/hodei/v1/api_pb.js";
import { connect } from "../client.js";
import { NONE, formatRelative, yesNo } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { printTable } from "../table.js";

export function registerTokensCommand(program: Command): void {
  program
    .command("tokens")
    .description("list OTP tokens (never their secrets)")
    .option("--limit <n>", "at most this many tokens", parsePositiveInt)
    .option("--json", "print an array of token objects")
    .action(async (options: { limit?: number; json?: boolean }, command: Command) => {
      const { client } = connect(command);
      const { tokens } = await client.listTokens({ limit: options.limit ?? 0 });
      if (options.json) {
        printJson(tokens.map((token) => messageJson(OtpTokenSchema, token)));
        return;
      }
      const nowMs = Date.now();
      printTable(
        ["PROVIDER", "PROVIDER_RESOURCE_ID", "CONSUMED", "TYPE", "JOB", "WORKER", "CREATED", "EXPIRES"],
        tokens.map((t) => [
          t.provider,
          t.providerResourceId || NONE,
          t.consumed ? pc.green(yesNo(true)) : yesNo(false),
          t.resourceType || NONE,
          t.jobId || NONE,
          t.workerId || NONE,
          formatRelative(t.createdAt, nowMs),
          formatExpiry(t, nowMs),
        ]),
        "no tokens",
      );
    });
}

function formatExpiry(token: OtpToken, nowMs: number): string {
  const when = formatRelative(token.expiresAt, nowMs);
  if (token.consumed) return pc.dim(when);
  return token.expired ? pc.yellow(`expired ${when}`) : when;
}
