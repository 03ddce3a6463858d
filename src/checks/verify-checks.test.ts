import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import {
  type Check,
  DATA_PROCESSING_EXPECTED,
  VERIFY_JOB_TYPES,
  type VerifiedJob,
  type VerifiedToken,
  type VerifyFacts,
  computeChecks,
  verdictLine,
} from "./verify-checks.js";

const PROVIDERS = { local: "process_id", docker: "container_id" } as const;

/** A run where everything went right: 3 jobs on each of local and docker. */
function goodFacts(): VerifyFacts {
  const jobs: VerifiedJob[] = [];
  const tokens: VerifiedToken[] = [];
  const outputs: Record<string, string> = {};
  for (const [provider, resourceType] of Object.entries(PROVIDERS)) {
    for (const { type } of VERIFY_JOB_TYPES) {
      const id = `${provider}-${type}`;
      jobs.push({ id, provider, type, state: "succeeded", durationMs: 1200, reason: "", isSettled: true });
      tokens.push({ jobId: id, provider, providerResourceId: provider === "docker" ? "a".repeat(64) : "4242", resourceType, consumed: true });
      if (type === "Data Processing") outputs[id] = `${DATA_PROCESSING_EXPECTED}\n`;
    }
  }
  return { jobs, tokens, outputs, orphans: { local: 0, docker: 0 }, liveWorkers: [], timeoutSeconds: 120 };
}

const failedNames = (checks: Check[]) => checks.filter((c) => !c.ok).map((c) => c.name);

describe("computeChecks", () => {
  it("passes a clean run", () => {
    const checks = computeChecks(goodFacts());
    assert.deepEqual(failedNames(checks), []);
    assert.equal(checks.find((c) => c.name === "every job succeeded")?.detail, "6/6 succeeded");
    assert.equal(verdictLine(checks, 6, 2, 4321), "verification passed (6 jobs on 2 providers in 4.3s)");
  });

  it("fails a job that did not succeed and gives its reason", () => {
    const facts = goodFacts();
    facts.jobs[4] = { ...facts.jobs[4], state: "failed", reason: "the worker did not register within 60s" };
    const checks = computeChecks(facts);
    assert.deepEqual(failedNames(checks), ["every job succeeded"]);
    assert.match(checks.find((c) => !c.ok)!.detail, /docker\/Data Processing failed: the worker did not register within 60s/);
    assert.equal(verdictLine(checks, 6, 2, 1), "verification FAILED: every job succeeded");
  });

  it("fails tokens without a provider_resource_id, unconsumed, or of the wrong kind", () => {
    const facts = goodFacts();
    facts.tokens[0] = { ...facts.tokens[0], providerResourceId: "", consumed: false };
    facts.tokens[3] = { ...facts.tokens[3], resourceType: "process_id" };
    const checks = computeChecks(facts);
    assert.deepEqual(failedNames(checks), [
      "every token carries a provider_resource_id",
      "every token was consumed",
      "every token's resource type is its provider's",
    ]);
    assert.match(checks.find((c) => c.name.includes("resource type"))!.detail, /docker\/Hello World has "process_id", expected container_id/);
  });

  it("expects pod names on kubernetes", () => {
    const facts = goodFacts();
    facts.jobs.push({ id: "k", provider: "kubernetes", type: "Hello World", state: "succeeded", durationMs: 1, reason: "", isSettled: true });
    facts.tokens.push({ jobId: "k", provider: "kubernetes", providerResourceId: "hodei-worker-x", resourceType: "container_id", consumed: true });
    assert.deepEqual(failedNames(computeChecks(facts)), ["every token's resource type is its provider's"]);
  });

  it("fails a job with no token at all", () => {
    const facts = goodFacts();
    facts.tokens.splice(1, 1);
    assert.deepEqual(failedNames(computeChecks(facts)), ["every job has an OTP token"]);
  });

  it("fails a wrong Data Processing count and tolerates surrounding whitespace", () => {
    const facts = goodFacts();
    facts.outputs["local-Data Processing"] = "   40951  \n";
    facts.outputs["docker-Data Processing"] = "40950\n";
    const checks = computeChecks(facts);
    assert.deepEqual(failedNames(checks), ["Data Processing printed 40951"]);
    assert.equal(checks.find((c) => !c.ok)!.detail, 'docker printed "40950"');
  });

  it("fails orphans, live workers and jobs that did not settle in time", () => {
    const facts = goodFacts();
    facts.orphans.docker = 2;
    facts.liveWorkers = [{ name: "hodei-worker-1", provider: "docker", state: "destroying", jobId: "docker-Hello World" }];
    facts.jobs[0] = { ...facts.jobs[0], isSettled: false };
    const checks = computeChecks(facts);
    assert.deepEqual(failedNames(checks), [
      "every job ended with its worker destroyed",
      "zero orphans on every provider",
      "zero live workers left for these jobs",
    ]);
    assert.equal(checks.find((c) => c.name.startsWith("zero orphans"))!.detail, "local 0, docker 2");
  });

  it("does not pass an empty run", () => {
    const checks = computeChecks({ jobs: [], tokens: [], outputs: {}, orphans: {}, liveWorkers: [], timeoutSeconds: 1 });
    assert.ok(failedNames(checks).includes("every job succeeded"));
  });
});

describe("VERIFY_JOB_TYPES", () => {
  it("run as the report expects under sh", () => {
    const run = (type: string) => execFileSync("sh", ["-c", VERIFY_JOB_TYPES.find((t) => t.type === type)!.command], { encoding: "utf8", env: { ...process.env, HODEI_WORKER_NAME: "hodei-worker-t" } });
    assert.equal(run("Data Processing").trim(), DATA_PROCESSING_EXPECTED);
    assert.match(run("CPU Intensive").trim(), /^\d+$/);
  });
});
