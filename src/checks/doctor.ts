/**
 * The doctor's probe, over the API with any JobService client (the CLI's and the dashboard's): for
 * every provider given, is its API healthy, which address do its workers use to reach the control
 * plane (and does that address look wrong), and can a worker actually start, register, run `true`
 * and be destroyed? All probes run at once; a failing provider gets one line of advice read from
 * its failure (doctor-advice.ts). Submits one job per healthy provider; starts nothing itself.
 */
import type { Provider } from "../gen/hodei/v1/api_pb.js";
import { doctorAdvice } from "./doctor-advice.js";
import { type ApiClient, cancelUnended, jobSpanMs, waitUntilSettled } from "./settle.js";

export const PROBE_LABEL = "hodei.io/probe";

export interface ProbeResult {
  ok: boolean;
  /** The probe job's last state, or "skipped" when the provider's API is down. */
  state: string;
  durationMs: number | null;
  reason: string;
  jobId: string;
}

export interface ProviderReport {
  name: string;
  apiOk: boolean;
  detail: string;
  workerServerUrl: string;
  warning: string;
  probe: ProbeResult;
  fix: string;
}

export interface DoctorReport {
  ok: boolean;
  providers: ProviderReport[];
}

/** Checks every provider of `providers` at once, each probe given timeoutSeconds to be over. */
export async function runDoctor(client: ApiClient, providers: Provider[], timeoutSeconds: number): Promise<DoctorReport> {
  const deadlineMs = Date.now() + timeoutSeconds * 1000;
  const reports = await Promise.all(providers.map((provider) => check(client, provider, timeoutSeconds, deadlineMs)));
  return { ok: reports.length > 0 && reports.every((r) => r.apiOk && r.probe.ok), providers: reports };
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
  if (!submitted) throw new Error("the server accepted the probe job but returned no job");
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
