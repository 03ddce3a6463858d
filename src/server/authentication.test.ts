/**
 * Who may do what, method by method: the auth interceptor and the job services' own checks over an
 * in-process Connect transport and a real store. The attacks through a real server process are in
 * test/e2e/auth.test.ts; this is the whole rule table, cheaply.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import type { Scope } from "../core/scopes.js";
import { mintApiKey, mintOtpToken } from "../core/token.js";
import { JobService, KeyService, ListKeysResponseSchema } from "../gen/hodei/v1/api_pb.js";
import { Store } from "../store/store.js";
import { methodScopes } from "./access.js";
import { LAST_USED_RESOLUTION_MS } from "./authentication.js";
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

describe("API access", () => {
  let store: Store;
  let clock: ManualClock;
  let isRequired: boolean;
  let api: Api;
  let clientsFor: (authorization: string | null) => { jobs: ReturnType<typeof createClient<typeof JobService>>; keys: ReturnType<typeof createClient<typeof KeyService>> };

  beforeEach(async () => {
    isRequired = true;
    api = await startApi({ isAuthRequired: () => isRequired });
    ({ store, clock } = api);
    clientsFor = (authorization) => {
      const transport = api.transportFor(authorization);
      return { jobs: createClient(JobService, transport), keys: createClient(KeyService, transport) };
    };
  });
  afterEach(async () => {
    await api.close();
  });

  /** A key with these scopes, stored; its clients. */
  async function keyWith(name: string, scopes: Scope[]) {
    return api.keyWith(name, scopes);
  }

  it("has a rule for every method of JobService and KeyService", () => {
    for (const service of [JobService, KeyService]) {
      for (const method of service.methods) assert.ok(methodScopes(service.typeName, method.name)?.length, `${service.typeName}/${method.name}`);
    }
    assert.equal(methodScopes("hodei.v1.JobService", "DropDatabase"), undefined);
  });

  it("refuses every call without a valid key as unauthenticated, saying how to get one", async () => {
    const otp = mintOtpToken();
    for (const authorization of [null, "", "Basic dXNlcjpwYXNz", "Bearer", `Bearer ${otp}`, `Bearer ${mintApiKey()}`, `bearer  ${mintApiKey()}x`]) {
      const { jobs, keys } = clientsFor(authorization);
      for (const call of [jobs.listJobs({}), jobs.submitJob({ command: ["true"] }), jobs.getJob({ id: "x" }), keys.listKeys({}), keys.createKey({ name: "x", scopes: ["admin"] })]) {
        const result = await outcome(call);
        assert.equal(result.code, Code.Unauthenticated, `${authorization}: ${result.message}`);
      }
      const logs = await outcome((async () => {
        for await (const _ of jobs.getLogs({ jobId: "x" })) void _;
      })());
      assert.equal(logs.code, Code.Unauthenticated, "a streaming call too");
    }
    const missing = await outcome(clientsFor(null).jobs.listJobs({}));
    assert.match(missing.message, /Authorization: Bearer <key>/);
    assert.match(missing.message, /hodei keys create/);
    assert.match(missing.message, /admin\.key/);
    assert.equal(await store.countRows("jobs"), 0, "nothing was submitted");
    assert.equal(await store.countRows("api_keys"), 0, "no key was created");
  });

  it("lets a read key read everything, and nothing else, naming the scope it lacks", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const { job } = await admin.jobs.submitJob({ command: ["true"], env: { SECRET: "s3" } });
    const reader = await keyWith("reader", ["read"]);
    assert.equal((await reader.jobs.listJobs({})).jobs.length, 1);
    assert.deepEqual((await reader.jobs.getJob({ id: job!.id })).env, { SECRET: "s3" }, "read sees env values");
    assert.equal((await outcome(reader.jobs.listWorkers({}))).code, "ok");
    assert.equal((await outcome(reader.jobs.listTokens({}))).code, "ok");
    const submit = await outcome(reader.jobs.submitJob({ command: ["true"] }));
    assert.equal(submit.code, Code.PermissionDenied);
    assert.match(submit.message, /lacks the scope "submit"/);
    const cancel = await outcome(reader.jobs.cancelJob({ id: job!.id }));
    assert.equal(cancel.code, Code.PermissionDenied);
    const keys = await outcome(reader.keys.listKeys({}));
    assert.equal(keys.code, Code.PermissionDenied);
    assert.match(keys.message, /lacks the scope "admin"/);
  });

  it("lets a submit key run jobs only on the providers it names", async () => {
    const local = await keyWith("ci-local", ["submit", "provider:local"]);
    const { job } = await local.jobs.submitJob({ command: ["true"] });
    assert.equal(job?.submittedBy, "ci-local");
    assert.equal((await store.jobs.get(job!.id))?.submitted_by, "ci-local");
    const docker = await outcome(local.jobs.submitJob({ command: ["true"], provider: "docker" }));
    assert.equal(docker.code, Code.PermissionDenied);
    assert.match(docker.message, /lacks the scope "provider:docker"/);
    const bare = await keyWith("ci-bare", ["submit"]);
    const refused = await outcome(bare.jobs.submitJob({ command: ["true"] }));
    assert.equal(refused.code, Code.PermissionDenied);
    assert.match(refused.message, /lacks the scope "provider:local" to run jobs on provider local/);
    assert.equal(await store.countRows("jobs"), 1);
  });

  it("lets a submit key read and cancel its own jobs only, without env values", async () => {
    const mine = await keyWith("mine", ["submit", "provider:local"]);
    const theirs = await keyWith("theirs", ["submit", "provider:local"]);
    const { job } = await mine.jobs.submitJob({ command: ["sleep", "60"], env: { TOKEN: "t0p" } });
    assert.deepEqual(job?.env, { TOKEN: "" });
    assert.equal(job?.envRedacted, true);
    const own = await mine.jobs.getJob({ id: job!.id });
    assert.deepEqual(own.env, { TOKEN: "" }, "names only, for a key without read");
    assert.equal(own.envRedacted, true);
    for await (const _ of mine.jobs.getLogs({ jobId: job!.id })) void _;

    const read = await outcome(theirs.jobs.getJob({ id: job!.id }));
    assert.equal(read.code, Code.PermissionDenied);
    assert.match(read.message, /lacks the scope "read" to read job/);
    const logs = await outcome((async () => {
      for await (const _ of theirs.jobs.getLogs({ jobId: job!.id })) void _;
    })());
    assert.equal(logs.code, Code.PermissionDenied);
    const cancel = await outcome(theirs.jobs.cancelJob({ id: job!.id }));
    assert.equal(cancel.code, Code.PermissionDenied);
    assert.match(cancel.message, /lacks the scope "admin" to cancel job .* which it did not submit/);
    assert.equal((await store.jobs.get(job!.id))?.state, "queued", "still queued");
    const listed = await outcome(mine.jobs.listJobs({}));
    assert.equal(listed.code, Code.PermissionDenied, "listing every job needs read");

    assert.equal((await mine.jobs.cancelJob({ id: job!.id })).state, "canceled");
    const admin = await keyWith("admin", ["admin"]);
    const { job: other } = await theirs.jobs.submitJob({ command: ["true"] });
    assert.equal((await admin.jobs.cancelJob({ id: other!.id })).state, "canceled", "admin cancels any job");
    assert.deepEqual((await admin.jobs.getJob({ id: job!.id })).env, { TOKEN: "t0p" });
  });

  it("gives each API key idempotency keys of its own: another key's use of one neither blocks it nor hands over that key's job", async () => {
    const first = await keyWith("first", ["submit", "provider:local"]);
    const second = await keyWith("second", ["submit", "provider:local"]);
    const { job } = await first.jobs.submitJob({ command: ["true"], idempotencyKey: "deploy-42" });
    const theirs = (await second.jobs.submitJob({ command: ["true"], idempotencyKey: "deploy-42" })).job!;
    assert.notEqual(theirs.id, job!.id, "the second key gets a job of its own");
    assert.equal((await second.jobs.submitJob({ command: ["true"], idempotencyKey: "deploy-42" })).job?.id, theirs.id, "and gets it back on a retry");
    assert.equal((await first.jobs.submitJob({ command: ["true"], idempotencyKey: "deploy-42" })).job?.id, job!.id, "the first key still gets its job back");
    // Nor a key that may read every job: handed over, the job would run with the first key's secrets.
    const reader = await keyWith("ci-rs", ["read", "submit", "provider:local"]);
    const own = (await reader.jobs.submitJob({ command: ["true"], idempotencyKey: "deploy-42" })).job!;
    assert.ok(own.id !== job!.id && own.id !== theirs.id, "a reader's submit is its own job too");
    // A different spec under a key's own idempotency key is still refused, naming its own job.
    const changed = await outcome(first.jobs.submitJob({ command: ["false"], idempotencyKey: "deploy-42" }));
    assert.equal(changed.code, Code.AlreadyExists);
    assert.match(changed.message, new RegExp(`already used for job ${job!.id}`));
  });

  it("manages keys with admin: created once, listed without secrets, revoked at once", async () => {
    const admin = await keyWith("root", ["admin"]);
    clock.advance(1000);
    const created = await admin.keys.createKey({ name: "ci", scopes: ["submit,provider:local", "read"] });
    assert.match(created.key, /^hodei_key_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(created.apiKey?.scopes, ["read", "submit", "provider:local"]);
    const ci = clientsFor(`Bearer ${created.key}`);
    assert.equal((await outcome(ci.jobs.listJobs({}))).code, "ok");
    const listed = await admin.keys.listKeys({});
    assert.deepEqual(listed.keys.map((k) => k.name), ["root", "ci"]);
    assert.ok(!JSON.stringify(toJson(ListKeysResponseSchema, listed)).includes(created.key.slice(10)), "no secret in the listing");
    assert.ok(listed.keys[1].lastUsedAt, "the use was recorded");

    assert.equal((await outcome(admin.keys.createKey({ name: "ci", scopes: ["read"] }))).code, Code.FailedPrecondition, "names are unique");
    assert.equal((await outcome(admin.keys.createKey({ name: "no spaces", scopes: ["read"] }))).code, Code.InvalidArgument);
    assert.equal((await outcome(admin.keys.createKey({ name: "x", scopes: ["root"] }))).code, Code.InvalidArgument);
    assert.equal((await outcome(admin.keys.createKey({ name: "x", scopes: [] }))).code, Code.InvalidArgument);

    assert.ok((await admin.keys.revokeKey({ name: "ci" })).revokedAt);
    const after = await outcome(ci.jobs.listJobs({}));
    assert.equal(after.code, Code.Unauthenticated, "revoked: refused on the very next call");
    assert.ok((await admin.keys.revokeKey({ name: "ci" })).revokedAt, "revoking again answers the revoked key");
    assert.equal((await outcome(admin.keys.revokeKey({ name: "nobody" }))).code, Code.NotFound);
    assert.deepEqual((await admin.keys.listKeys({})).keys.map((k) => k.name), ["root"]);
    assert.deepEqual((await admin.keys.listKeys({ all: true })).keys.map((k) => k.name), ["root", "ci"]);
    assert.equal((await outcome(admin.keys.createKey({ name: "ci", scopes: ["read"] }))).code, Code.FailedPrecondition, "a revoked key keeps its name");
  });

  it("cancels a revoked key's jobs that have not started, delayed ones included, and no other key's", async () => {
    const admin = await keyWith("root", ["admin"]);
    const leaked = await keyWith("leaked", ["submit", "provider:local"]);
    const other = await keyWith("other", ["submit", "provider:local"]);
    const planted = (await leaked.jobs.submitJob({ command: ["true"], delaySeconds: 3600 })).job!;
    const queued = (await leaked.jobs.submitJob({ command: ["true"] })).job!;
    const others = (await other.jobs.submitJob({ command: ["true"] })).job!;
    await admin.keys.revokeKey({ name: "leaked" });
    for (const id of [planted.id, queued.id]) {
      const job = await store.jobs.get(id);
      assert.equal(job?.state, "canceled", id);
      assert.equal(job?.reason, 'canceled: the API key "leaked" that submitted it was revoked before it started');
    }
    assert.equal((await store.jobs.get(others.id))?.state, "queued", "another key's job is left alone");
  });

  it("writes a key's last use at most once a minute", async () => {
    const reader = await keyWith("reader", ["read"]);
    await reader.jobs.listJobs({});
    await new Promise((r) => setImmediate(r));
    const first = (await store.keys.get("reader"))?.last_used_at;
    assert.equal(first, clock.nowMs());
    clock.advance(LAST_USED_RESOLUTION_MS - 1);
    await reader.jobs.listJobs({});
    await new Promise((r) => setImmediate(r));
    assert.equal((await store.keys.get("reader"))?.last_used_at, first);
    clock.advance(1);
    await reader.jobs.listJobs({});
    await new Promise((r) => setImmediate(r));
    assert.equal((await store.keys.get("reader"))?.last_used_at, clock.nowMs());
  });

  it("does not retry a failed write of a key's last use on every call (a locked database blocks for its busy timeout)", async () => {
    const reader = await keyWith("reader", ["read"]);
    let tries = 0;
    store.keys.touch = () => {
      tries++;
      return Promise.reject(Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }));
    };
    for (let i = 0; i < 3; i++) assert.equal((await outcome(reader.jobs.listJobs({}))).code, "ok", "the call succeeds all the same");
    assert.equal(tries, 1);
    clock.advance(LAST_USED_RESOLUTION_MS);
    await reader.jobs.listJobs({});
    assert.equal(tries, 2, "tried again a minute later");
  });

  it("with HODEI_AUTH=off asks for no key and records no submitter", async () => {
    isRequired = false;
    const { jobs, keys } = clientsFor(null);
    const { job } = await jobs.submitJob({ command: ["true"], env: { A: "1" } });
    assert.equal(job?.submittedBy, "");
    assert.deepEqual(job?.env, { A: "1" });
    assert.equal((await jobs.cancelJob({ id: job!.id })).state, "canceled");
    assert.equal((await outcome(keys.createKey({ name: "later", scopes: ["read"] }))).code, "ok");
  });
});
