/**
 * Job secrets through the real worker service and job service (gRPC on a real store): sealed at
 * submit, opened only into the RunJob of the job's dispatch, answered by name only, gone when the
 * job ends, never in the server's log; a job whose secrets do not open fails for good unstarted.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { SecretBox, SecretOpenError } from "../core/secret-box.js";
import { JobSchema, JobService } from "../gen/hodei/v1/api_pb.js";
import { Store } from "../store/store.js";
import { startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { startApi } from "../../test/fixtures/api.js";

const SECRETS = { API_TOKEN: "tok-9f8e7d6c5b4a", DB_PASSWORD: "correct horse battery staple" };
const VALUES = Object.values(SECRETS);

/** Asserts that no value (nor its base64) is in `text`. */
function assertNoValue(text: string, where: string): void {
  for (const value of VALUES) {
    assert.ok(!text.includes(value), `${where} holds a secret value`);
    assert.ok(!text.includes(Buffer.from(value).toString("base64")), `${where} holds a secret value in base64`);
  }
}

describe("SubmitJob with secrets", () => {
  let store: Store;
  const box = new SecretBox(Buffer.alloc(32, 0x24));
  let client: ReturnType<typeof createClient<typeof JobService>>;
  let close: () => Promise<void>;

  beforeEach(async () => {
    // A provider slot only for validation: nothing is provisioned.
    const api = await startApi({ providers: ["local"], secretBox: box });
    store = api.store;
    client = (await api.keyWith("ci", ["submit", "provider:local"])).jobs;
    close = api.close;
  });
  afterEach(async () => {
    await close();
  });

  it("seals each secret for the job's id and answers with their names only", async () => {
    const { job } = await client.submitJob({ command: ["true"], env: { PLAIN: "shown" }, secrets: SECRETS });
    assert.ok(job);
    assert.deepEqual(job.secretNames, ["API_TOKEN", "DB_PASSWORD"]);
    assert.deepEqual({ ...job.env }, { PLAIN: "" }, "a submit-only key sees env names only, as before");
    assertNoValue(toJsonString(JobSchema, job), "the SubmitJob answer");
    const sealed = await store.secrets.listOfJob(job.id);
    assert.deepEqual(Object.fromEntries(sealed.map((s) => [s.name, box.open(job.id, s)])), SECRETS);
    assert.throws(() => box.open("another-job", sealed[0]), SecretOpenError, "sealed for this job id only");
  });

  it("refuses a secret that shadows an env variable, naming the field and no value", async () => {
    const err = await client.submitJob({ command: ["true"], env: { API_TOKEN: "plain" }, secrets: SECRETS }).catch((e: unknown) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /^secrets: "API_TOKEN" is also in env/);
    assertNoValue(err.rawMessage, "the error");
    assert.equal(await store.countRows("jobs"), 0);
  });
});

describe("job secrets on the server", () => {
  let p: WorkerProtocol;

  before(async () => {
    p = await startWorkerProtocol();
  });
  after(async () => {
    await p.close();
  });

  it("puts the opened secrets in the job's RunJob, and keeps them sealed in the database", async () => {
    const { job, run, stream } = await p.running({ command: ["sh", "-c", "echo $API_TOKEN"], secrets: SECRETS });
    assert.deepEqual({ ...run.secrets }, SECRETS);
    assert.deepEqual({ ...run.env }, {}, "secrets are not env");
    const rows = await p.store.db.selectFrom("job_secrets").selectAll().where("job_id", "=", job.id).execute();
    assert.deepEqual(rows.map((r) => r.name).sort(), Object.keys(SECRETS));
    assertNoValue(JSON.stringify(rows.map((r) => [Buffer.from(r.nonce).toString("latin1"), Buffer.from(r.ciphertext).toString("latin1")])), "a job_secrets row");
    assertNoValue(JSON.stringify(await p.store.jobs.get(job.id)), "the job row");
    stream.outgoing.close();
  });

  it("answers the secrets' names only, in GetJob and ListJobs", async () => {
    const { job, stream } = await p.running({ secrets: SECRETS });
    const got = await p.api.getJob({ id: job.id });
    assert.deepEqual(got.secretNames, ["API_TOKEN", "DB_PASSWORD"]);
    assertNoValue(toJsonString(JobSchema, got), "GetJob");
    const listed = await p.api.listJobs({});
    assertNoValue(listed.jobs.map((j) => toJsonString(JobSchema, j)).join("\n"), "ListJobs");
    stream.outgoing.close();
  });

  it("deletes the secrets once the result is recorded, and the RunJob after a reconnect carries them while the job runs", async () => {
    const { job, reg, stream } = await p.running({ secrets: SECRETS });
    stream.outgoing.close();
    await stream.end();
    // The agent lost its stream before it saw the RunJob: it says so, and gets it again.
    const again = p.openStream(reg.sessionToken);
    again.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    assert.equal((await again.next()).kind.case, "ack");
    const run = await again.next();
    assert.ok(run.kind.case === "run");
    assert.deepEqual({ ...run.kind.value.secrets }, SECRETS);
    again.send({ case: "result", value: { exitCode: 0, lastSeq: 0n } });
    assert.equal((await again.next()).kind.case, "resultAck");
    again.outgoing.close();
    assert.equal((await p.store.jobs.get(job.id))?.state, "succeeded");
    assert.deepEqual(await p.store.secrets.listOfJob(job.id), []);
    assert.deepEqual((await p.api.getJob({ id: job.id })).secretNames, ["API_TOKEN", "DB_PASSWORD"], "the names stay");
  });

  it("fails a job whose secrets do not open (another server key) for good, without starting it, and tells its agent to stop", async () => {
    const { job, otp } = await p.provision({ secrets: SECRETS });
    // As if the server's key had changed since the submit.
    const other = new SecretBox(Buffer.alloc(32, 0x42));
    for (const [name, value] of Object.entries(SECRETS)) {
      const sealed = other.seal(job.id, name, value);
      await p.store.db.updateTable("job_secrets").set({ nonce: sealed.nonce, ciphertext: sealed.ciphertext, key_id: sealed.keyId }).where("job_id", "=", job.id).where("name", "=", name).execute();
    }
    const reg = await p.client.register({ otpToken: otp, hostname: "h", agentVersion: "test", instanceKey: "k" });
    const stream = p.openStream(reg.sessionToken);
    stream.send({ case: "hello", value: { started: false, lastSeq: 0n } });
    assert.equal((await stream.next()).kind.case, "ack");
    const cancel = await stream.next();
    assert.equal(cancel.kind.case, "cancel", "no RunJob: the job never starts");
    const failed = await p.store.jobs.get(job.id);
    assert.equal(failed?.state, "failed");
    assert.equal(failed?.attempts, 1, "not retried: retrying cannot help");
    assert.match(failed!.reason, /secrets cannot be opened: .*another server key/);
    assert.equal((await p.store.workers.listOfJob(job.id))[0].started_at, null);
    assertNoValue(failed!.reason, "the reason");
    stream.outgoing.close();
  });

  it("never writes a secret value to the server's log", () => {
    assert.ok(p.lines.length > 0, "the server logged");
    assertNoValue(JSON.stringify(p.lines), "the server's log");
  });
});
