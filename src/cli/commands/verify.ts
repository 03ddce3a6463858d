/**
 * `hodei verify`: the seed's verification as a command. Submits at once, on every enabled provider
 * (or those named), a Hello World, a Data Processing and a CPU Intensive job; waits until all have
 * ended with their workers destroyed; then reports the jobs, their OTP tokens and the checks (every
 * job succeeded, every token bound to its worker's resource and consumed, nothing left behind).
 * Everything it reads is served by the API; it starts nothing itself.
 */
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import pc from "picocolors";
import { OtpTokenSchema, type Job, type OtpToken } from "../../gen/hodei/v1/api_pb.js";
import { type ApiClient, connect } from "../client.js";
import { CliError, USAGE_EXIT_CODE } from "../errors.js";
import { readLogs } from "../follow.js";
import { NONE, colorState, formatDurationMs, stderrColors, truncate, yesNo } from "../format.js";
import { messageJson, printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { cancelUnended, jobSpanMs, waitUntilSettled } from "../settle.js";
import { printTable } from "../table.js";
import {
  type Check,
  DATA_PROCESSING,
  VERIFY_JOB_TYPES,
  type VerifiedJob,
  computeChecks,
  verdictLine,
} from "../verify-checks.js";

export const VERIFY_LABEL = "hodei.io/verify";
export const VERIFY_TYPE_LABEL = "hodei.io/verify-type";

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

interface Submitted {
  provider: string;
  type: string;
  job: Job;
}

async function verify(options: VerifyOptions, command: Command): Promise<number> {
  const startMs = Date.now();
  const { client } = connect(command);
  const providers = await chooseProviders(client, options.providers);
  const runId = randomUUID().slice(0, 8);
  const timeoutSeconds = options.timeoutSeconds;
  const isChatty = !options.json && process.stderr.isTTY === true;

  // All providers' jobs at once, as in the seed's scenario.
  const submitted: Submitted[] = await Promise.all(
    providers.flatMap((provider) =>
      VERIFY_JOB_TYPES.map(async ({ type, command: shell }) => {
        const { job } = await client.submitJob({
          command: [shell],
          provider,
          timeoutSeconds,
          maxAttempts: 1,
          labels: { [VERIFY_LABEL]: runId, [VERIFY_TYPE_LABEL]: type },
        });
        if (!job) throw new CliError("the server accepted a job but returned no job");
        return { provider, type, job };
      }),
    ),
  );
  if (isChatty) process.stderr.write(stderrColors().dim(`verify ${runId}: ${submitted.length} jobs submitted on ${providers.join(", ")}; waiting (up to ${timeoutSeconds}s)\n`));

  const deadlineMs = Date.now() + timeoutSeconds * 1000;
  const settled = await Promise.all(submitted.map((s) => waitUntilSettled(client, s.job.id, deadlineMs)));
  await cancelUnended(
    client,
    settled.filter((s) => !s.isSettled).map((s) => s.job),
  );

  const jobs: VerifiedJob[] = submitted.map((s, i) => {
    const { job, isSettled } = settled[i];
    return {
      id: job.id,
      provider: s.provider,
      type: s.type,
      state: job.state,
      durationMs: jobSpanMs(job),
      reason: job.reason || job.attemptHistory.at(-1)?.failureReason || "",
      isSettled,
    };
  });
  const jobIds = new Set(jobs.map((j) => j.id));

  const [tokenList, providerList, workerList, outputs] = await Promise.all([
    client.listTokens({ limit: 1000 }),
    client.listProviders({}),
    client.listWorkers({ all: false, limit: 1000 }),
    readOutputs(client, jobs.filter((j) => j.type === DATA_PROCESSING)),
  ]);
  const order = (t: OtpToken) => jobs.findIndex((j) => j.id === t.jobId) * 1000 + t.attempt;
  const tokens = tokenList.tokens.filter((t) => jobIds.has(t.jobId)).sort((a, b) => order(a) - order(b));
  const orphans: Record<string, number> = {};
  for (const p of providerList.providers) if (providers.includes(p.name)) orphans[p.name] = p.orphans;
  const liveWorkers = workerList.workers.filter((w) => jobIds.has(w.jobId) && w.state !== "destroyed");

  const checks = computeChecks({ jobs, tokens, orphans, liveWorkers, outputs, timeoutSeconds });
  const ok = checks.every((c) => c.ok);
  const totalMs = Date.now() - startMs;

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
    printReport(runId, jobs, tokens, checks, verdictLine(checks, jobs.length, providers.length, totalMs));
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

/** Each job's stdout, as stored by the server. */
async function readOutputs(client: ApiClient, jobs: VerifiedJob[]): Promise<Record<string, string>> {
  const outputs: Record<string, string> = {};
  await Promise.all(
    jobs.map(async (job) => {
      const parts: Uint8Array[] = [];
      await readLogs(client, job.id, {
        onEntry: (entry) => {
          if (entry.stream === "stdout") parts.push(entry.data);
        },
      });
      // Decoded once: a chunk may end in the middle of a character.
      outputs[job.id] = Buffer.concat(parts).toString("utf8");
    }),
  );
  return outputs;
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
