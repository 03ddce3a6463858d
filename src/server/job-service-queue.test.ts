/**
 * The client API's side of the queue, through an in-process Connect transport over a real store:
 * priority, queue timeout and run-at in SubmitJob and back in the Job; a reused idempotency key
 * (the same spec returns the first job, another spec answers already_exists naming the key);
 * ListJobs by label_selector, and the selector's syntax and bounds.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import { InvalidInputError } from "../core/errors.js";
import { validateJobSpec } from "../core/job-spec.js";
import { JobService } from "../gen/hodei/v1/api_pb.js";
import { Store } from "../store/store.js";
import { MAX_LABEL_TERMS, parseLabelSelector } from "./label-selector.js";
import { startApi } from "../../test/fixtures/api.js";

const YEAR_MS = 365 * 24 * 3600 * 1000;

describe("job service: the queue", () => {
  let store: Store;
  let clock: ManualClock;
  let client: ReturnType<typeof createClient<typeof JobService>>;
  let close: () => Promise<void>;

  beforeEach(async () => {
    // The reconciler sees no provider: every job stays queued.
    const api = await startApi({ providers: ["local"], reconcilerProviders: new Map(), jobService: { defaultQueueTimeoutSeconds: 600 } });
    ({ store, clock } = api);
    client = (await api.keyWith("admin", ["admin"])).jobs;
    close = api.close;
  });
  afterEach(async () => {
    await close();
  });

  async function failure(call: Promise<unknown>): Promise<ConnectError> {
    const err = await call.then(
      () => assert.fail("expected the call to fail"),
      (e: unknown) => ConnectError.from(e),
    );
    return err;
  }

  describe("SubmitJob", () => {
    it("takes priority, queue timeout and run-at, and GetJob shows them", async () => {
      const runAtMs = clock.nowMs() + 3_600_000;
      const { job } = await client.submitJob({ command: ["true"], priority: 7, queueTimeoutSeconds: 30, runAt: timestampFromMs(runAtMs) });
      const got = await client.getJob({ id: job!.id });
      assert.equal(got.priority, 7);
      assert.equal(got.queueTimeoutSeconds, 30);
      assert.equal(timestampMs(got.runAt!), runAtMs);
      assert.equal((await store.jobs.get(got.id))?.not_before_ms, runAtMs, "the claim waits for it");
    });

    it("gives a job that names no queue timeout the server's, and a job with no run-at its submission time", async () => {
      const { job } = await client.submitJob({ command: ["true"] });
      assert.equal(job!.queueTimeoutSeconds, 600);
      assert.equal(job!.priority, 0);
      assert.equal(timestampMs(job!.runAt!), clock.nowMs());
    });

    it("resolves a delay against the server's clock", async () => {
      const { job } = await client.submitJob({ command: ["true"], delaySeconds: 90 });
      assert.equal(timestampMs(job!.runAt!), clock.nowMs() + 90_000);
    });

    it("refuses a priority out of range, a run-at more than a year ahead, and a run-at with a delay, naming the field", async () => {
      const priority = await failure(client.submitJob({ command: ["true"], priority: 101 }));
      assert.equal(priority.code, Code.InvalidArgument);
      assert.match(priority.rawMessage, /^priority: /);
      const far = await failure(client.submitJob({ command: ["true"], runAt: timestampFromMs(clock.nowMs() + YEAR_MS + 1000) }));
      assert.equal(far.code, Code.InvalidArgument);
      assert.match(far.rawMessage, /^runAt: at most a year ahead/);
      const both = await failure(client.submitJob({ command: ["true"], runAt: timestampFromMs(clock.nowMs()), delaySeconds: 5 }));
      assert.match(both.rawMessage, /^runAt: give either runAt or delaySeconds/);
    });
  });

  describe("idempotency keys", () => {
    it("returns the first job for the same key and the same spec, even when the spec spells defaults out", async () => {
      const first = await client.submitJob({ command: ["echo", "hi"], idempotencyKey: "deploy-42", labels: { a: "1", b: "2" } });
      clock.advance(5000);
      const again = await client.submitJob({ command: ["echo", "hi"], idempotencyKey: "deploy-42", labels: { b: "2", a: "1" }, provider: "local", timeoutSeconds: 60 });
      assert.equal(again.job!.id, first.job!.id);
      assert.equal(await store.countRows("jobs"), 1);
    });

    it("answers already_exists naming the key when the same key comes with another spec", async () => {
      const first = await client.submitJob({ command: ["echo", "hi"], idempotencyKey: "deploy-42" });
      for (const other of [{ command: ["echo", "ho"] }, { command: ["echo", "hi"], priority: 1 }, { command: ["echo", "hi"], env: { A: "1" } }]) {
        const err = await failure(client.submitJob({ ...other, idempotencyKey: "deploy-42" }));
        assert.equal(err.code, Code.AlreadyExists, JSON.stringify(other));
        assert.match(err.rawMessage, /idempotencyKey: "deploy-42" was already used for job \S+ with a different spec/);
        assert.ok(err.rawMessage.includes(first.job!.id));
      }
      assert.equal(await store.countRows("jobs"), 1, "nothing else was stored");
    });

    it("keeps answering the first job for a key whose job predates spec hashes", async () => {
      const first = await client.submitJob({ command: ["echo", "hi"], idempotencyKey: "old" });
      await store.db.updateTable("jobs").set({ spec_hash: null }).where("id", "=", first.job!.id).execute();
      const again = await client.submitJob({ command: ["echo", "something else"], idempotencyKey: "old" });
      assert.equal(again.job!.id, first.job!.id);
    });
  });

  describe("ListJobs by label", () => {
    it("lists only the jobs with every label of the selector", async () => {
      const ids: Record<string, string> = {};
      for (const [name, labels] of Object.entries({ a: { team: "infra", env: "prod" }, b: { team: "infra", env: "dev" }, c: { team: "web", env: "prod" } })) {
        ids[name] = (await client.submitJob({ command: ["true"], labels })).job!.id;
        clock.advance(1);
      }
      const list = async (labelSelector: string) => (await client.listJobs({ labelSelector })).jobs.map((j) => j.id);
      assert.deepEqual(await list("team=infra"), [ids.b, ids.a]);
      assert.deepEqual(await list("team=infra,env=prod"), [ids.a]);
      assert.deepEqual(await list(" env=prod , team=web "), [ids.c]);
      assert.deepEqual(await list("team=nobody"), []);
      assert.deepEqual(await list(""), [ids.c, ids.b, ids.a]);
      const page = await client.listJobs({ labelSelector: "team=infra", limit: 1 });
      assert.deepEqual(page.jobs.map((j) => j.id), [ids.b]);
      const next = await client.listJobs({ labelSelector: "team=infra", limit: 1, pageToken: page.nextPageToken });
      assert.deepEqual(next.jobs.map((j) => j.id), [ids.a]);
    });

    it("answers invalid_argument naming labelSelector for a bad selector", async () => {
      for (const bad of ["team", "=x", "a b=c", "team=a,team=b", Array(MAX_LABEL_TERMS + 1).fill("a=b").join(",")]) {
        const err = await failure(client.listJobs({ labelSelector: bad }));
        assert.equal(err.code, Code.InvalidArgument, bad);
        assert.match(err.rawMessage, /^labelSelector: /, bad);
      }
    });
  });
  describe("ListJobs by query", () => {
    it("finds a job by id prefix at any age and by command substring, with the other filters", async () => {
      const make = (await client.submitJob({ command: ["make", "Release"], labels: { team: "web" } })).job!;
      clock.advance(1);
      const echo = (await client.submitJob({ command: ["echo", "hi"] })).job!;
      clock.advance(1);
      const list = async (query: string, more = {}) => (await client.listJobs({ query, ...more })).jobs.map((j) => j.id);
      assert.deepEqual(await list(make.id.slice(0, 8)), [make.id]);
      assert.deepEqual(await list(echo.id.toUpperCase()), [echo.id], "case-insensitive, the whole id");
      assert.deepEqual(await list("make rel"), [make.id], "the command as shown, case-insensitive");
      assert.deepEqual(await list("  hi "), [echo.id], "trimmed");
      assert.deepEqual(await list("make", { labelSelector: "team=web" }), [make.id]);
      assert.deepEqual(await list("make", { labelSelector: "team=ops" }), []);
      assert.deepEqual(await list(make.id.slice(0, 8), { states: ["running"] }), [], "an id match passes the filters too");
      const page = await client.listJobs({ query: "e" });
      assert.deepEqual([page.partial, page.examined, page.nextPageToken], [false, 2, ""]);
    });

    it("examines at most 5,000 jobs a call, says the answer is partial, and continues with its token", async () => {
      const old = (await client.submitJob({ command: ["deploy", "the-needle"] })).job!;
      // 5,100 newer jobs that do not match, straight into the store (5,100 submits take longer).
      const filler = validateJobSpec({ command: ["echo", "hay"] }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });
      for (let i = 0; i < 5100; i++) {
        clock.advance(1);
        await store.jobs.insert(`filler-${i}`, filler, clock.nowMs());
      }
      const first = await client.listJobs({ query: "needle" });
      assert.deepEqual([first.jobs.length, first.partial, first.examined], [0, true, 5000]);
      assert.notEqual(first.nextPageToken, "", "a token to go on searching");
      const second = await client.listJobs({ query: "needle", pageToken: first.nextPageToken });
      assert.deepEqual(second.jobs.map((j) => j.id), [old.id]);
      assert.deepEqual([second.partial, second.examined, second.nextPageToken], [false, 101, ""]);
      assert.deepEqual((await client.listJobs({ query: old.id.slice(0, 6) })).jobs.map((j) => j.id), [old.id], "an id prefix finds it at once");
    });

    it("answers invalid_argument naming query for one longer than 200 characters", async () => {
      assert.equal((await client.listJobs({ query: "x".repeat(200) })).jobs.length, 0);
      const err = await failure(client.listJobs({ query: "x".repeat(201) }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, /^query: at most 200 characters/);
    });
  });
});

describe("parseLabelSelector", () => {
  it("reads k=v terms: a value may be empty or hold '='", () => {
    assert.deepEqual(parseLabelSelector("team=infra,env=prod"), [["team", "infra"], ["env", "prod"]]);
    assert.deepEqual(parseLabelSelector("k=,x=a=b"), [["k", ""], ["x", "a=b"]]);
    assert.deepEqual(parseLabelSelector("app.kubernetes.io/name=hodei"), [["app.kubernetes.io/name", "hodei"]]);
    assert.deepEqual(parseLabelSelector("a=1,a=1"), [["a", "1"]], "a repeated term counts once");
    assert.deepEqual(parseLabelSelector("  "), []);
  });

  it(`refuses more than ${MAX_LABEL_TERMS} terms without splitting all of a huge selector`, () => {
    assert.equal(parseLabelSelector(Array(MAX_LABEL_TERMS).fill("a=b").join(",")).length, 1);
    assert.throws(
      () => parseLabelSelector("a=b,".repeat(1_000_000)),
      (err: unknown) => err instanceof InvalidInputError && err.field === "labelSelector" && /at most 8 terms/.test(err.message),
    );
  });

  it("names a bad term without echoing all of a huge one", () => {
    assert.throws(
      () => parseLabelSelector("x".repeat(10_000)),
      (err: unknown) => err instanceof InvalidInputError && err.message.length < 300 && /"x{40}\.\.\." is not key=value/.test(err.message),
    );
    assert.throws(
      () => parseLabelSelector(`k=${"v".repeat(257)}`),
      (err: unknown) => err instanceof InvalidInputError && /longer than 256 bytes/.test(err.message),
    );
  });
});
