/**
 * The verification of `hodei verify`, as pure functions of plain facts gathered from the API: the
 * three jobs each provider runs, what each must show, and the checks the seed's report made (every
 * job succeeded, every OTP token carries its worker's provider_resource_id of the provider's kind and
 * was consumed, the pipeline printed the right count, nothing left behind on any provider).
 */

export interface VerifyJobType {
  type: string;
  /** Run through `sh -c`. */
  command: string;
}

export const VERIFY_JOB_TYPES: readonly VerifyJobType[] = [
  { type: "Hello World", command: 'echo "Hello World from $HODEI_WORKER_NAME"; sleep 1' },
  // How many of 1..100000 contain a 7: 100000 - 9^5 = 40951.
  { type: "Data Processing", command: "seq 1 100000 | grep 7 | sort -r | uniq | wc -l" },
  {
    type: "CPU Intensive",
    command: "i=0; s=0; while [ $i -lt 100000 ]; do s=$(( (s + i * i) % 1000003 )); i=$((i + 1)); done; echo $s",
  },
];

export const DATA_PROCESSING = "Data Processing";
export const DATA_PROCESSING_EXPECTED = "40951";

/** The kind of provider_resource_id each provider records. */
export const RESOURCE_TYPE_OF: Readonly<Record<string, string>> = {
  local: "process_id",
  docker: "container_id",
  kubernetes: "pod_name",
};

export interface VerifiedJob {
  id: string;
  provider: string;
  type: string;
  state: string;
  /** Created to finished; null when it never finished. */
  durationMs: number | null;
  reason: string;
  /** Ended with every worker destroyed before the deadline. */
  isSettled: boolean;
}

export interface VerifiedToken {
  jobId: string;
  provider: string;
  providerResourceId: string;
  resourceType: string;
  consumed: boolean;
}

export interface LiveWorker {
  name: string;
  provider: string;
  state: string;
  jobId: string;
}

export interface VerifyFacts {
  jobs: VerifiedJob[];
  /** The OTP tokens minted for these jobs. */
  tokens: VerifiedToken[];
  /** Provider name to the resources it has with our labels and no live worker. */
  orphans: Record<string, number>;
  /** Workers of these jobs that are not destroyed. */
  liveWorkers: LiveWorker[];
  /** Job id to its stdout, for the Data Processing jobs. */
  outputs: Record<string, string>;
  timeoutSeconds: number;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export function computeChecks(facts: VerifyFacts): Check[] {
  const { jobs, tokens } = facts;
  const jobName = (jobId: string) => {
    const job = jobs.find((j) => j.id === jobId);
    return job ? `${job.provider}/${job.type}` : jobId;
  };
  const checks: Check[] = [];

  const unsettled = jobs.filter((j) => !j.isSettled);
  checks.push({
    name: "every job ended with its worker destroyed",
    ok: unsettled.length === 0,
    detail:
      unsettled.length === 0
        ? `${jobs.length}/${jobs.length} within ${facts.timeoutSeconds}s`
        : `not within ${facts.timeoutSeconds}s (so canceled): ${unsettled.map((j) => `${j.provider}/${j.type} (${j.state})`).join(", ")}`,
  });

  const unsucceeded = jobs.filter((j) => j.state !== "succeeded");
  checks.push({
    name: "every job succeeded",
    ok: jobs.length > 0 && unsucceeded.length === 0,
    detail:
      unsucceeded.length === 0
        ? `${jobs.length}/${jobs.length} succeeded`
        : unsucceeded.map((j) => `${j.provider}/${j.type} ${j.state}${j.reason ? `: ${j.reason}` : ""}`).join("; "),
  });

  const tokenless = jobs.filter((j) => !tokens.some((t) => t.jobId === j.id));
  checks.push({
    name: "every job has an OTP token",
    ok: tokenless.length === 0,
    detail: tokenless.length === 0 ? `${tokens.length} tokens for ${jobs.length} jobs` : `no token for ${tokenless.map((j) => `${j.provider}/${j.type}`).join(", ")}`,
  });

  const unbound = tokens.filter((t) => !t.providerResourceId);
  checks.push({
    name: "every token carries a provider_resource_id",
    ok: unbound.length === 0,
    detail: unbound.length === 0 ? `${tokens.length}/${tokens.length}` : `missing for ${unbound.map((t) => jobName(t.jobId)).join(", ")}`,
  });

  const unconsumed = tokens.filter((t) => !t.consumed);
  checks.push({
    name: "every token was consumed",
    ok: unconsumed.length === 0,
    detail: unconsumed.length === 0 ? `${tokens.length}/${tokens.length}` : `not consumed: ${unconsumed.map((t) => jobName(t.jobId)).join(", ")}`,
  });

  const mistyped = tokens.filter((t) => RESOURCE_TYPE_OF[t.provider] !== undefined && t.resourceType !== RESOURCE_TYPE_OF[t.provider]);
  const providers = [...new Set(jobs.map((j) => j.provider))];
  checks.push({
    name: "every token's resource type is its provider's",
    ok: mistyped.length === 0,
    detail:
      mistyped.length === 0
        ? providers.map((p) => `${p} → ${RESOURCE_TYPE_OF[p] ?? "(any)"}`).join(", ")
        : mistyped.map((t) => `${jobName(t.jobId)} has "${t.resourceType || "none"}", expected ${RESOURCE_TYPE_OF[t.provider]}`).join("; "),
  });

  const dataJobs = jobs.filter((j) => j.type === DATA_PROCESSING);
  const wrongCounts = dataJobs.filter((j) => (facts.outputs[j.id] ?? "").trim() !== DATA_PROCESSING_EXPECTED);
  checks.push({
    name: `Data Processing printed ${DATA_PROCESSING_EXPECTED}`,
    ok: dataJobs.length > 0 && wrongCounts.length === 0,
    detail:
      wrongCounts.length === 0
        ? `on ${dataJobs.map((j) => j.provider).join(", ") || "no provider"}`
        : wrongCounts.map((j) => `${j.provider} printed ${JSON.stringify((facts.outputs[j.id] ?? "").trim())}`).join("; "),
  });

  const orphaned = Object.entries(facts.orphans).filter(([, count]) => count !== 0);
  checks.push({
    name: "zero orphans on every provider",
    ok: orphaned.length === 0,
    detail: Object.entries(facts.orphans)
      .map(([provider, count]) => `${provider} ${count}`)
      .join(", "),
  });

  checks.push({
    name: "zero live workers left for these jobs",
    ok: facts.liveWorkers.length === 0,
    detail:
      facts.liveWorkers.length === 0
        ? "0"
        : `${facts.liveWorkers.length} live: ${facts.liveWorkers.map((w) => `${w.name} (${w.provider}, ${w.state}, ${jobName(w.jobId)})`).join(", ")}`,
  });
  return checks;
}

/** The final line of the report. */
export function verdictLine(checks: Check[], jobCount: number, providerCount: number, totalMs: number): string {
  const failed = checks.filter((c) => !c.ok);
  if (failed.length === 0) {
    return `verification passed (${jobCount} jobs on ${providerCount} provider${providerCount === 1 ? "" : "s"} in ${(totalMs / 1000).toFixed(1)}s)`;
  }
  return `verification FAILED: ${failed.map((c) => c.name).join("; ")}`;
}
