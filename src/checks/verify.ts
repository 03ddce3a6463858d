/**
 * The seed's verification, over the API with any JobService client (the CLI's and the
 * dashboard's): submits at once, on every provider given, a Hello World, a Data Processing and a
 * CPU Intensive job; waits until all have ended with their workers destroyed (canceling those
 * still going at the deadline); then gathers the facts (jobs, their OTP tokens, orphans, live
 * workers, the Data Processing output) and the checks of verify-checks.ts. Starts nothing itself.
 */
import type { OtpToken } from "../gen/hodei/v1/api_pb.js";
import { type ApiClient, cancelUnended, jobSpanMs, waitUntilSettled } from "./settle.js";
import { type Check, computeChecks, DATA_PROCESSING, type VerifiedJob, VERIFY_JOB_TYPES, verdictLine } from "./verify-checks.js";

export const VERIFY_LABEL = "hodei.io/verify";
export const VERIFY_TYPE_LABEL = "hodei.io/verify-type";

export interface VerifyReport {
  ok: boolean;
  /** Labels this run's jobs (hodei.io/verify=runId). */
  runId: string;
  providers: string[];
  jobs: VerifiedJob[];
  /** The OTP tokens of these jobs, in job order. */
  tokens: OtpToken[];
  orphans: Record<string, number>;
  checks: Check[];
  verdict: string;
  totalMs: number;
}

export interface VerifyOptions {
  timeoutSeconds: number;
  /** Called once every job is submitted (the CLI says so while it waits). */
  onSubmitted?(runId: string, jobCount: number): void;
}

export async function runVerify(client: ApiClient, providers: string[], options: VerifyOptions): Promise<VerifyReport> {
  const startMs = Date.now();
  const runId = newRunId();
  const { timeoutSeconds } = options;
  // All providers' jobs at once, as in the seed's scenario.
  const submitted = await Promise.all(
    providers.flatMap((provider) =>
      VERIFY_JOB_TYPES.map(async ({ type, command }) => {
        const { job } = await client.submitJob({
          command: [command],
          provider,
          timeoutSeconds,
          maxAttempts: 1,
          labels: { [VERIFY_LABEL]: runId, [VERIFY_TYPE_LABEL]: type },
        });
        if (!job) throw new Error("the server accepted a job but returned no job");
        return { provider, type, job };
      }),
    ),
  );
  options.onSubmitted?.(runId, submitted.length);

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
  const totalMs = Date.now() - startMs;
  return {
    ok: checks.every((c) => c.ok),
    runId,
    providers,
    jobs,
    tokens,
    orphans,
    checks,
    verdict: verdictLine(checks, jobs.length, providers.length, totalMs),
    totalMs,
  };
}

/** Each job's stdout, as stored by the server (decoded once: a chunk may end mid-character). */
async function readOutputs(client: ApiClient, jobs: VerifiedJob[]): Promise<Record<string, string>> {
  const outputs: Record<string, string> = {};
  await Promise.all(
    jobs.map(async (job) => {
      const parts: Uint8Array[] = [];
      for await (const entry of client.getLogs({ jobId: job.id, follow: false })) {
        if (entry.stream === "stdout") parts.push(entry.data);
      }
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const part of parts) {
        all.set(part, at);
        at += part.length;
      }
      outputs[job.id] = new TextDecoder().decode(all);
    }),
  );
  return outputs;
}

/** 8 hex characters (crypto.getRandomValues: also on a page served over plain http, unlike randomUUID). */
function newRunId(): string {
  return [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(16).padStart(2, "0")).join("");
}
