/**
 * RerunJob over an in-process Connect transport and a real store, with API keys as in production:
 * what a rerun copies, which jobs may be rerun, and who may rerun them (access.ts).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import { validateJobSpec } from "../core/job-spec.js";
import type { Scope } from "../core/scopes.js";
import { storedIdempotencyKey } from "../store/jobs.js";
import { Store } from "../store/store.js";
import { type Api, startApi } from "../../test/fixtures/api.js";

/** The code and message a call failed with, or "ok". */
async function outcome(call: Promise<unknown>): Promise<{ code: Code | "ok"; message: string }> {
  try {
    await call;
    return { code: "ok", message: "" };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
}

describe("RerunJob", () => {
  let store: Store;
  let clock: ManualClock;
  let api: Api;

  beforeEach(async () => {
    api = await startApi();
    ({ store, clock } = api);
  });
  afterEach(async () => {
    await api.close();
  });

  async function keyWith(name: string, scopes: Scope[]) {
    return (await api.keyWith(name, scopes)).jobs;
  }

  /** Ends a queued job as `state` (how it ended does not matter to a rerun). */
  async function finish(id: string, state: "failed" | "canceled" = "canceled"): Promise<void> {
    assert.ok(await store.jobs.transition(id, state, clock.nowMs(), { finished_at: clock.nowMs() }));
  }

  it("submits a copy of a finished job's whole spec as a new queued job naming the original, without its idempotency key", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const { job: original } = await admin.submitJob({
      command: ["sh", "-c", "exit 3"],
      provider: "docker",
      env: { GREETING: "hi" },
      labels: { team: "infra" },
      timeoutSeconds: 90,
      maxAttempts: 3,
      retryOnExitCodes: "4,3",
      image: "alpine:3.20",
      idempotencyKey: "deploy-42",
      resources: { cpuMillis: 500, memoryMb: 256 },
      priority: 7,
      queueTimeoutSeconds: 300,
      delaySeconds: 60,
      pullPolicy: "never",
    });
    await finish(original!.id, "failed");
    clock.advance(1000);
    const rerun = await admin.rerunJob({ id: original!.id });
    assert.notEqual(rerun.id, original!.id);
    assert.equal(rerun.rerunOf, original!.id);
    assert.equal(rerun.state, "queued");
    assert.deepEqual(rerun.attemptHistory, []);
    const copied = (job: typeof rerun) => ({
      command: job.command,
      script: job.script,
      provider: job.provider,
      env: job.env,
      labels: job.labels,
      timeoutSeconds: job.timeoutSeconds,
      maxAttempts: job.maxAttempts,
      retryOnExitCodes: job.retryOnExitCodes,
      image: job.image,
      resources: { cpuMillis: job.resources?.cpuMillis, memoryMb: job.resources?.memoryMb },
      priority: job.priority,
      queueTimeoutSeconds: job.queueTimeoutSeconds,
      pullPolicy: job.pullPolicy,
    });
    assert.deepEqual(copied(rerun), copied(original!));
    assert.equal(rerun.priority, 7);
    assert.equal(rerun.pullPolicy, "never");
    // Due at once: the original's delay is not copied.
    assert.equal(Number(rerun.runAt!.seconds) * 1000, clock.nowMs() - (clock.nowMs() % 1000));
    assert.equal(rerun.retryOnExitCodes, "3,4");
    assert.equal((await store.jobs.get(rerun.id))?.idempotency_key, null, "a rerun is a new submission, not a repeat");
    const originalRow = (await store.jobs.get(original!.id))!;
    assert.equal(originalRow.idempotency_key, storedIdempotencyKey(originalRow.submitted_by, "deploy-42"), "the original keeps its key");
    const again = await admin.rerunJob({ id: original!.id });
    assert.notEqual(again.id, rerun.id, "each rerun is a new job");
    assert.equal((await admin.getJob({ id: rerun.id })).rerunOf, original!.id, "GetJob shows it too");
    assert.equal((await admin.getJob({ id: original!.id })).rerunOf, "");
  });

  it("refuses to rerun a job that had secrets (their values are gone), naming them and saying to submit again", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const { job: original } = await admin.submitJob({ command: ["true"], secrets: { API_TOKEN: "s3cr3t-value-1", DB_PASS: "s3cr3t-value-2" } });
    await finish(original!.id);
    const error = await admin.rerunJob({ id: original!.id }).then(
      () => assert.fail("the rerun should be refused"),
      (err: unknown) => ConnectError.from(err),
    );
    assert.equal(error.code, Code.FailedPrecondition);
    assert.match(error.rawMessage, /secrets API_TOKEN, DB_PASS.*submit it again with those secrets/);
    assert.doesNotMatch(error.rawMessage, /s3cr3t/);
  });

  it("copies a script, and a rerun of a rerun names the job it copies", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const { job: original } = await admin.submitJob({ script: "echo one\necho two\n" });
    await finish(original!.id, "failed");
    const first = await admin.rerunJob({ id: original!.id });
    assert.equal(first.script, "echo one\necho two\n");
    assert.deepEqual(first.command, []);
    await finish(first.id);
    assert.equal((await admin.rerunJob({ id: first.id })).rerunOf, first.id);
  });

  it("refuses a job that has not finished, naming its state", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const { job } = await admin.submitJob({ command: ["true"] });
    const queued = await outcome(admin.rerunJob({ id: job!.id }));
    assert.equal(queued.code, Code.FailedPrecondition);
    assert.match(queued.message, new RegExp(`^job ${job!.id} is queued; only a finished job can be rerun`));
    assert.ok(await store.jobs.transition(job!.id, "provisioning", clock.nowMs()));
    assert.match((await outcome(admin.rerunJob({ id: job!.id }))).message, /is provisioning; only a finished job/);
    assert.equal(await store.countRows("jobs"), 1, "nothing was submitted");
  });

  it("answers not found for an unknown job and invalid_argument for no id", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const unknown = await outcome(admin.rerunJob({ id: "nope" }));
    assert.deepEqual(unknown, { code: Code.NotFound, message: "job nope not found" });
    assert.equal((await outcome(admin.rerunJob({ id: "" }))).code, Code.InvalidArgument);
  });

  it("validates the copy as any submit: a provider no longer enabled is refused, naming the field", async () => {
    const spec = validateJobSpec({ command: ["true"], provider: "kubernetes" }, { provider: "local", timeoutSeconds: 60, providers: ["local", "kubernetes"] });
    await store.jobs.insert("old-k8s", spec, clock.nowMs());
    await finish("old-k8s");
    const admin = await keyWith("admin", ["admin"]);
    const refused = await outcome(admin.rerunJob({ id: "old-k8s" }));
    assert.equal(refused.code, Code.InvalidArgument);
    assert.match(refused.message, /^provider: unknown provider "kubernetes"/);
  });

  describe("who may rerun", () => {
    it("a submit key reruns its own job on a provider it may use; the rerun is its own, env values withheld", async () => {
      const mine = await keyWith("mine", ["submit", "provider:local"]);
      const { job } = await mine.submitJob({ command: ["true"], env: { TOKEN: "t0p" } });
      await finish(job!.id);
      const rerun = await mine.rerunJob({ id: job!.id });
      assert.equal(rerun.submittedBy, "mine");
      assert.deepEqual(rerun.env, { TOKEN: "" });
      assert.equal(rerun.envRedacted, true);
      assert.equal((await store.jobs.get(rerun.id))?.env, JSON.stringify({ TOKEN: "t0p" }), "the values are copied, only not shown");
    });

    it("a submit key may not rerun another key's job it cannot read", async () => {
      const theirs = await keyWith("theirs", ["submit", "provider:local"]);
      const mine = await keyWith("mine", ["submit", "provider:local"]);
      const { job } = await theirs.submitJob({ command: ["true"] });
      await finish(job!.id);
      const refused = await outcome(mine.rerunJob({ id: job!.id }));
      assert.equal(refused.code, Code.PermissionDenied);
      assert.match(refused.message, /lacks the scope "read" to read job/);
      const reader = await keyWith("submit-and-read", ["submit", "read", "provider:local"]);
      const rerun = await reader.rerunJob({ id: job!.id });
      assert.equal(rerun.submittedBy, "submit-and-read", "with read it may, and the rerun is the caller's");
      assert.deepEqual(rerun.env, {});
    });

    it("needs submit, and provider:P for the job's provider", async () => {
      const admin = await keyWith("admin", ["admin"]);
      const { job } = await admin.submitJob({ command: ["true"], provider: "docker" });
      await finish(job!.id);
      const reader = await keyWith("reader", ["read"]);
      const noSubmit = await outcome(reader.rerunJob({ id: job!.id }));
      assert.equal(noSubmit.code, Code.PermissionDenied);
      assert.match(noSubmit.message, /lacks the scope "submit" to call RerunJob/);
      const localOnly = await keyWith("local-only", ["submit", "read", "provider:local"]);
      const noProvider = await outcome(localOnly.rerunJob({ id: job!.id }));
      assert.equal(noProvider.code, Code.PermissionDenied);
      assert.match(noProvider.message, /lacks the scope "provider:docker" to run jobs on provider docker/);
      assert.equal(await store.countRows("jobs"), 1, "nothing was submitted");
    });
  });
});
