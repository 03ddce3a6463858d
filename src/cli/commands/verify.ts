/**
 * `hodei verify`: the seed's verification as a command. Submits at once, on every enabled provider
 * (or those named), a Hello World, a Data Processing and a CPU Intensive job; waits until all have
 * ended with their workers destroyed; then reports the jobs, their OTP tokens and the checks (every
 * job succeeded, every token bound to its worker's resource and consumed, nothing left behind).
 * The run is checks/verify.ts (the dashboard runs it too); this chooses the providers and prints.
 */
import type { Command } from "commander";
import pc from "picocolors";
import { runVerify } from "../../checks/verify.js";
import type { Check, VerifiedJob } from "../../checks/verify-checks.js";
import { OtpTokenSchema, type OtpToken } from "../../gen/hodei/v1/api_pb.js";
import { type ApiClient, connect } from "../client.js";
import { CliError, USAGE_EXIT_CODE } from "../errors.js";
import { NONE, colorState, formatDurationMs, stderrColors, truncate, yesNo } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { printTable } from "../table.js";

export { VERIFY_LABEL, VERIFY_TYPE_LABEL } from "../../checks/verify.js";

interface VerifyOptions {
  json?: boolean;
  providers?: string[];
  timeoutSeconds: number;
}

export function registerVerifyCommand(program: Command): void {
  program
    .command("verify")
    .description("run three test jobs on every provider at once and check jobs, tokens and cleanup")
    .option("--providers <names>", "only these providers (comma-separated; default: every enabled one)", collectNames)
    .option("--timeout-seconds <n>", "stop waiting for the jobs after this many seconds", parsePositiveInt, 120)
    .option("--json", "print the report as one JSON object")
    .action(async (options: VerifyOptions, command: Command) => {
      process.exitCode = await verify(options, command);
    });
}

function collectNames(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

async function verify(options: VerifyOptions, command: Command): Promise<number> {
  const { client } = connect(command);
  const providers = await chooseProviders(client, options.providers);
  const isChatty = !options.json && process.stderr.isTTY === true;
  const report = await runVerify(client, providers, {
    timeoutSeconds: options.timeoutSeconds,
    onSubmitted: (runId, count) => {
      if (isChatty) process.stderr.write(stderrColors().dim(`verify ${runId}: ${count} jobs submitted on ${providers.join(", ")}; waiting (up to ${options.timeoutSeconds}s)\n`));
    },
  });
  const { ok, runId, jobs, tokens, orphans, checks, totalMs } = report;
  if (options.json) {
    printJson({
      ok,
      runId,
      providers,
      jobs: jobs.map(({ id, provider, type, state, durationMs, reason }) => ({ id, provider, type, state, durationMs, reason })),
      tokens: tokens.map((t) => messageJson(OtpTokenSchema, t)),
      orphans,
      checks,
      totalMs,
    });
  } else {
    printReport(runId, jobs, tokens, checks, report.verdict);
  }
  return ok ? 0 : 1;
}

/** The providers to verify: the ones named (each must be enabled), else every enabled one. */
async function chooseProviders(client: ApiClient, named: string[] | undefined): Promise<string[]> {
  const { providers } = await client.listProviders({});
  const enabled = providers.map((p) => p.name);
  if (enabled.length === 0) throw new CliError("the server has no provider enabled");
  if (!named || named.length === 0) return enabled;
  const unknown = named.filter((name) => !enabled.includes(name));
  if (unknown.length > 0) {
    throw new CliError(`unknown provider ${unknown.map((n) => `"${n}"`).join(", ")}; this server has: ${enabled.join(", ")}`, USAGE_EXIT_CODE);
  }
  return [...new Set(named)];
}

function printReport(runId: string, jobs: VerifiedJob[], tokens: OtpToken[], checks: Check[], verdict: string): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const showReason = jobs.some((j) => j.state !== "succeeded" && j.reason);
  out(pc.bold(`Jobs (verify run ${runId})`));
  printTable(
    ["PROVIDER", "TYPE", "STATE", "DURATION", ...(showReason ? ["REASON"] : [])],
    jobs.map((j) => [
      j.provider,
      j.type,
      colorState(j.state),
      j.durationMs === null ? NONE : formatDurationMs(j.durationMs),
      ...(showReason ? [j.state === "succeeded" ? "" : truncate(j.reason, 100)] : []),
    ]),
    "no jobs",
  );
  out("");
  out(pc.bold("OTP tokens"));
  printTable(
    ["PROVIDER", "PROVIDER_RESOURCE_ID", "CONSUMED", "TYPE"],
    tokens.map((t) => [t.provider, t.providerResourceId || NONE, t.consumed ? pc.green(yesNo(true)) : pc.red(yesNo(false)), t.resourceType || NONE]),
    "no tokens",
  );
  out("");
  out(pc.bold("Checks"));
  for (const check of checks) {
    out(`${check.ok ? pc.green("✓") : pc.red("✗")} ${check.name}${check.detail ? pc.dim(`  ${truncate(check.detail, 1200)}`) : ""}`);
  }
  out("");
  out(checks.every((c) => c.ok) ? pc.green(verdict) : pc.red(verdict));
}
