/**
 * `hodei doctor`: for every enabled provider, is its API healthy, which address do its workers use
 * to reach the control plane (and does that address look wrong), and can a worker actually start,
 * register, run `true` and be destroyed? All probes run at once; a failing provider gets one line of
 * advice read from its failure (doctor-advice.ts).
 */
import type { Command } from "commander";
import pc from "picocolors";
import type { Provider } from "../../gen/hodei/v1/api_pb.js";
import { type ApiClient, connect } from "../client.js";
import { CliError } from "../errors.js";
import { doctorAdvice } from "../doctor-advice.js";
import { truncate } from "../format.js";
import { printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";
import { cancelUnended, jobSpanMs, waitUntilSettled } from "../settle.js";

export const PROBE_LABEL = "hodei.io/probe";

interface DoctorOptions {
  json?: boolean;
  timeoutSeconds: number;
}

interface ProbeResult {
  ok: boolean;
  /** The probe job's last state, or "skipped" when the provider's API is down. */
  state: string;
  durationMs: number | null;
  reason: string;
  jobId: string;
}

interface ProviderReport {
  name: string;
  apiOk: boolean;
  detail: string;
  workerServerUrl: string;
  warning: string;
  probe: ProbeResult;
  fix: string;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("check every provider: its API, its workers' server URL, and a probe worker")
    .option("--timeout-seconds <n>", "give each probe worker this long to run and be destroyed", parsePositiveInt, 60)
    .option("--json", "print the report as one JSON object")
    .action(async (options: DoctorOptions, command: Command) => {
      process.exitCode = await doctor(options, command);
    });
}

async function doctor(options: DoctorOptions, command: Command): Promise<number> {
  const { client } = connect(command);
  const { providers } = await client.listProviders({});
  if (providers.length === 0) throw new CliError("the server has no provider enabled");
  const deadlineMs = Date.now() + options.timeoutSeconds * 1000;
  const reports = await Promise.all(providers.map((provider) => check(client, provider, options.timeoutSeconds, deadlineMs)));
  const ok = reports.every((r) => r.apiOk && r.probe.ok);
  if (options.json) printJson({ ok, providers: reports });
  else printReport(reports);
  return ok ? 0 : 1;
}

async function check(client: ApiClient, provider: Provider, timeoutSeconds: number, deadlineMs: number): Promise<ProviderReport> {
  const probe = provider.healthy
    ? await runProbe(client, provider.name, timeoutSeconds, deadlineMs)
    : { ok: false, state: "skipped", durationMs: null, reason: "the provider's API is not healthy", jobId: "" };
  let fix = "";
  if (!probe.ok) {
    fix = doctorAdvice({ provider: provider.name, apiOk: provider.healthy, detail: provider.detail, workerServerUrl: provider.workerServerUrl, reason: probe.reason });
    if (!fix && probe.jobId) fix = `see "hodei jobs get ${probe.jobId}" and "hodei logs ${probe.jobId}"`;
  }
  return {
    name: provider.name,
    apiOk: provider.healthy,
    detail: provider.detail,
    workerServerUrl: provider.workerServerUrl,
    warning: provider.workerServerUrlWarning,
    probe,
    fix,
  };
}

/** Submits `true` on the provider and waits until it has ended with its worker destroyed. */
async function runProbe(client: ApiClient, provider: string, timeoutSeconds: number, deadlineMs: number): Promise<ProbeResult> {
  const { job: submitted } = await client.submitJob({
    command: ["true"],
    provider,
    timeoutSeconds,
    maxAttempts: 1,
    labels: { [PROBE_LABEL]: "doctor" },
  });
  if (!submitted) throw new CliError("the server accepted the probe job but returned no job");
  const { job, isSettled } = await waitUntilSettled(client, submitted.id, deadlineMs);
  if (!isSettled) await cancelUnended(client, [job]);
  const failure = job.reason || job.attemptHistory.at(-1)?.failureReason || "";
  const reason = !isSettled
    ? `the probe worker was not ${job.state === "succeeded" ? "destroyed" : "done"} within ${timeoutSeconds}s (job ${job.state}${failure ? `: ${failure}` : ""})`
    : job.state === "succeeded"
      ? ""
      : failure || `the probe job ${job.state}${job.exitCode !== undefined ? ` with exit code ${job.exitCode}` : ""}`;
  return { ok: isSettled && job.state === "succeeded", state: job.state, durationMs: jobSpanMs(job), reason, jobId: job.id };
}

function printReport(reports: ProviderReport[]): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const width = Math.max(...reports.map((r) => r.name.length));
  for (const r of reports) {
    const name = r.name.padEnd(width);
    if (!r.apiOk) {
      out(`${pc.red("✗")} ${name}  api unhealthy: ${r.detail}`);
    } else if (r.probe.ok) {
      out(`${pc.green("✓")} ${name}  api ok · probe worker registered and exited (${r.probe.durationMs ?? "?"} ms)`);
    } else {
      out(`${pc.red("✗")} ${name}  api ok · probe failed: ${truncate(r.probe.reason, 400)}`);
    }
    out(pc.dim(`  workers reach the server at ${r.workerServerUrl || "(unknown)"}`));
    if (r.warning) out(pc.yellow(`  warning: ${r.warning}`));
    if (r.fix) out(`  fix: ${r.fix}`);
  }
  const failing = reports.filter((r) => !r.apiOk || !r.probe.ok).length;
  out("");
  out(
    failing === 0
      ? pc.green(`doctor: all ${reports.length} provider${reports.length === 1 ? "" : "s"} ok`)
      : pc.red(`doctor: ${failing} of ${reports.length} provider${reports.length === 1 ? "" : "s"} failing`),
  );
}
