/**
 * Store contract, job secrets: a job and its sealed secrets are stored together or not at all,
 * the job row holds their names only, and they are deleted in the transaction that ends the job
 * (every way: result, loss, cancel, timeout, queue timeout), never while the job may still run. Run by describeStore.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import type { JobState } from "../core/job-state.js";
import { type SealedSecret, SecretBox } from "../core/secret-box.js";
import { contractSpec, driveJob } from "./lifecycle.contract.js";
import type { Store } from "./store.js";

const SECRETS = { API_TOKEN: "tok-0123456789", DB_PASSWORD: "correct horse battery staple" };

export function describeSecretQueries(makeStore: () => Promise<Store>): void {
  describe("job secrets", () => {
    let store: Store;
    let clock: ManualClock;
    const box = new SecretBox(Buffer.alloc(32, 7));
    const seal = (jobId: string, secrets: Record<string, string> = SECRETS): SealedSecret[] =>
      Object.entries(secrets).map(([name, value]) => box.seal(jobId, name, value));

    /** driveJob with the job submitted with SECRETS. */
    const drive = (id: string, stage: Parameters<typeof driveJob>[3], options: Parameters<typeof driveJob>[4] = {}) =>
      driveJob(store, clock, id, stage, { ...options, spec: { secrets: SECRETS }, sealed: seal(id) });

    beforeEach(async () => {
      store = await makeStore();
      clock = new ManualClock();
    });
    afterEach(async () => {
      await store.close();
    });

    it("stores a job with its sealed secrets; the job row holds their names, sorted, and no value", async () => {
      const sealed = seal("j");
      const row = await store.secrets.insertJob("j", contractSpec({ secrets: SECRETS }), clock.nowMs(), "ci", sealed);
      assert.equal(row.id, "j");
      assert.deepEqual(JSON.parse(row.secret_names), ["API_TOKEN", "DB_PASSWORD"]);
      const stored = await store.secrets.listOfJob("j");
      assert.deepEqual(stored, [...sealed].sort((a, b) => a.name.localeCompare(b.name)));
      assert.deepEqual(Object.fromEntries(stored.map((s) => [s.name, box.open("j", s)])), SECRETS);
      for (const value of Object.values(SECRETS)) {
        assert.ok(!JSON.stringify(row).includes(value), "no value in the job row");
        assert.ok(!stored.some((s) => s.ciphertext.includes(value) || s.nonce.includes(value)), "no value in a secret row");
      }
    });

    it("stores neither the job nor its secrets when one of them cannot be written", async () => {
      const sealed = seal("j");
      await assert.rejects(store.secrets.insertJob("j", contractSpec({ secrets: SECRETS }), clock.nowMs(), null, [...sealed, sealed[0]]));
      assert.equal(await store.jobs.get("j"), undefined);
      assert.deepEqual(await store.secrets.listOfJob("j"), []);
    });

    it("returns the first job for a used idempotency key and adds no secrets to it", async () => {
      const spec = contractSpec({ secrets: SECRETS, idempotencyKey: "once" });
      await store.secrets.insertJob("first", spec, clock.nowMs(), null, seal("first"));
      const again = await store.secrets.insertJob("second", { ...spec, secrets: { OTHER: "other-value" } }, clock.nowMs(), null, seal("second", { OTHER: "other-value" }));
      assert.equal(again.id, "first");
      assert.deepEqual((await store.secrets.listOfJob("first")).map((s) => s.name), ["API_TOKEN", "DB_PASSWORD"]);
      assert.deepEqual(await store.secrets.listOfJob("second"), []);
    });

    for (const end of ["succeeded", "failed", "timed_out", "canceled"] as JobState[]) {
      it(`deletes a job's secrets in the transaction that ends it ${end}`, async () => {
        await drive("j", "running");
        assert.equal((await store.secrets.listOfJob("j")).length, 2, "kept while it runs");
        await drive("other", "running");
        const [worker] = await store.workers.listOfJob("j");
        assert.ok(await store.attempts.end(worker, end, clock.nowMs(), { finished_at: clock.nowMs() }, ""));
        assert.deepEqual(await store.secrets.listOfJob("j"), []);
        assert.equal((await store.secrets.listOfJob("other")).length, 2, "another job's secrets stay");
        assert.deepEqual(JSON.parse((await store.jobs.get("j"))!.secret_names), ["API_TOKEN", "DB_PASSWORD"], "the names stay with the job");
      });
    }

    it("keeps a job's secrets when a lost attempt requeues it, and a late end of that attempt deletes nothing", async () => {
      const { workers } = await drive("j", "running", { attempts: 2 });
      assert.equal((await store.secrets.listOfJob("j")).length, 2, "the first attempt's loss requeued the job with its secrets");
      assert.equal(await store.attempts.end(workers[0], "failed", clock.nowMs(), { finished_at: clock.nowMs() }, "late"), null);
      assert.equal((await store.secrets.listOfJob("j")).length, 2, "attempt 2 still has them");
    });

    it("deletes a job's secrets when it is canceled, queued or running", async () => {
      await drive("queued", "queued");
      await drive("running", "running");
      for (const id of ["queued", "running"]) {
        assert.ok(await store.attempts.cancel(id, "canceled by user", clock.nowMs(), clock.nowMs() + 5000));
        assert.deepEqual(await store.secrets.listOfJob(id), [], id);
      }
    });

    it("deletes a job's secrets when its queue timeout ends it, and keeps them until then", async () => {
      const sealed = seal("waits");
      const job = await store.secrets.insertJob("waits", contractSpec({ secrets: SECRETS, queueTimeoutSeconds: 60 }), clock.nowMs(), null, sealed);
      assert.ok(job.queue_deadline_ms);
      assert.equal(await store.attempts.timeOutInQueue("waits", "never started", job.queue_deadline_ms - 1, 0), null);
      assert.equal((await store.secrets.listOfJob("waits")).length, 2, "not before its deadline");
      assert.ok(await store.attempts.timeOutInQueue("waits", "never started", job.queue_deadline_ms, 0));
      assert.deepEqual(await store.secrets.listOfJob("waits"), []);
    });

    it("lets retention remove a finished job whose secrets were left behind", async () => {
      await drive("old", "destroyed");
      // A leftover (e.g. written by an older release): put back by hand.
      await store.db.insertInto("job_secrets").values(seal("old").map((s) => ({ job_id: "old", name: s.name, nonce: s.nonce, ciphertext: s.ciphertext, key_id: s.keyId }))).execute();
      clock.advance(10_000);
      assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 10), 1);
      assert.deepEqual(await store.secrets.listOfJob("old"), []);
      assert.equal(await store.jobs.get("old"), undefined);
    });
  });
}
