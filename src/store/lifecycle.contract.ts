/**
 * Test fixture shared by the store contract parts and the retention step's tests: drives one job
 * through the store the way the scheduler and the worker service do (submit, claim, provisioned,
 * token consumed, register, dispatch, a log chunk, end, destroy), stopping wherever a test needs.
 */
import assert from "node:assert/strict";
import type { Clock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import type { JobState } from "../core/job-state.js";
import { type JobSpec, validateJobSpec } from "../core/job-spec.js";
import type { SealedSecret } from "../core/secret-box.js";
import { hashToken } from "../core/token.js";
import type { JobRow, WorkerRow } from "./schema.js";
import type { Store } from "./store.js";
import { claimOne } from "../../test/fixtures/claim.js";

export function contractSpec(overrides: Partial<JobSpec> = {}): JobSpec {
  return validateJobSpec({ command: ["echo", "hi"], ...overrides }, { provider: "local", timeoutSeconds: 600, providers: ["local", "docker", "kubernetes"] });
}

/** How far to take a job: "queued" submits only; "destroyed" runs the whole lifecycle. */
export type Stage = "queued" | "provisioning" | "running" | "ended" | "destroyed";

export interface DrivenJob {
  job: JobRow;
  workers: WorkerRow[];
}

/**
 * Takes job `id` to `stage`, ending it (from "ended" on) in `end` (default succeeded), with
 * `attempts` attempts (every earlier one lost and requeued, its worker destroyed). With `sealed`,
 * the job is submitted with those secrets (sealed for `id`).
 */
export async function driveJob(
  store: Store,
  clock: Clock,
  id: string,
  stage: Stage,
  options: { end?: JobState; attempts?: number; spec?: Partial<JobSpec>; sealed?: SealedSecret[] } = {},
): Promise<DrivenJob> {
  const submitted = options.sealed
    ? await store.secrets.insertJob(id, contractSpec(options.spec), clock.nowMs(), null, options.sealed)
    : await store.jobs.insert(id, contractSpec(options.spec), clock.nowMs());
  if (stage === "queued") return { job: submitted, workers: [] };
  const workers: WorkerRow[] = [];
  const attempts = options.attempts ?? 1;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const isLast = attempt === attempts;
    const now = clock.nowMs();
    const workerId = `${id}-w${attempt}`;
    const claimed = await claimOne(store, submitted.provider, now, (job) => ({
      worker: { id: workerId, name: workerName(workerId), jobId: job.id, attempt: job.attempts, provider: job.provider, registrationDeadlineMs: now + 60_000 },
      token: { id: `${workerId}-token`, tokenHash: hashToken(`${workerId}-otp`), expiresAtMs: now + 60_000 },
    }));
    assert.ok(claimed, `job ${id} was claimed for attempt ${attempt}`);
    if (isLast && stage === "provisioning") return { job: claimed.job, workers: [...workers, claimed.worker] };
    await store.attempts.recordProvisioned(workerId, `pid-${workerId}`, "process_id", now);
    assert.ok(await store.tokens.consume(hashToken(`${workerId}-otp`), now));
    const registered = await store.attempts.register(workerId, hashToken(`${workerId}-session`), "host", now);
    assert.ok(registered && (await store.attempts.dispatch(registered, now)));
    assert.equal((await store.logs.append(workerId, [{ seq: 1, stream: "stdout", data: Buffer.from("hi\n"), timeMs: now }], null)).kind, "stored");
    const running = (await store.workers.get(workerId))!;
    if (isLast && stage === "running") return { job: (await store.jobs.get(id))!, workers: [...workers, running] };
    const to: JobState = isLast ? (options.end ?? "succeeded") : "queued";
    const patch = isLast ? { exit_code: to === "succeeded" ? 0 : 1, finished_at: now } : { reason: "lost; retrying" };
    assert.ok(await store.attempts.end(running, to, now, patch, isLast ? "" : "lost"), `attempt ${attempt} of ${id} ended`);
    if (isLast && stage === "ended") return { job: (await store.jobs.get(id))!, workers: [...workers, (await store.workers.get(workerId))!] };
    const destroyed = await store.workers.transition(workerId, "destroyed", { destroyed_at: now });
    assert.ok(destroyed);
    workers.push(destroyed);
  }
  return { job: (await store.jobs.get(id))!, workers };
}
