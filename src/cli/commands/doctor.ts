/**
 * `hodei doctor`: for every enabled provider, is its API healthy, which address do its workers use
 * to reach the control plane (and does that address look wrong), and can a worker actually start,
 * register, run `true` and be destroyed? The probe is checks/doctor.ts (the dashboard runs it too);
 * this prints its report.
 */
import type { Command } from "commander";
import pc from "picocolors";
import { type ProviderReport, runDoctor } from "../../checks/doctor.js";
import { connect } from "../client.js";
import { CliError } from "../errors.js";
import { truncate } from "../format.js";
import { printJson } from "../json.js";
import { parsePositiveInt } from "../options.js";

export { PROBE_LABEL } from "../../checks/doctor.js";

interface DoctorOptions {
  json?: boolean;
  timeoutSeconds: number;
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
  const report = await runDoctor(client, providers, options.timeoutSeconds);
  if (options.json) printJson(report);
  else printReport(report.providers);
  return report.ok ? 0 : 1;
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
