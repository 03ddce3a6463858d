/**
 * The client API's reads whose cost must not grow with the page or the provider: ListJobs reads
 * a page's workers in one query, ListProviders reads one provider's workers in one query and never
 * reports an unknown orphan count as 0; GetJob of a job removed by retention says so. Served by an
 * in-process Connect transport over a real store, with every statement recorded. And ListJobs'
 * states filter: split, deduplicated, bounded, and never echoing a huge entry back.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import { InvalidInputError } from "../core/errors.js";
import { JobService } from "../gen/hodei/v1/api_pb.js";
import type { ProviderResource, WorkerProvider } from "../providers/provider.js";
import { type ProviderSlot } from "../scheduler/reconciler.js";
import { driveJob } from "../store/lifecycle.contract.js";
import { Store } from "../store/store.js";
import { parseStateFilter } from "./job-service.js";
import { toJob } from "./api-mapping.js";
import { type Api, startApi } from "../../test/fixtures/api.js";

/** A provider that only answers health and list, as the test sets them. */
function fakeProvider(name: string, list: () => Promise<ProviderResource[]>, healthy = true): WorkerProvider {
  return {
    name,
    resourceType: "process_id",
    start: () => Promise.reject(new Error("not in this test")),
    inspect: () => Promise.resolve({ state: "gone" }),
    stop: () => Promise.resolve(),
    list,
    health: () => Promise.resolve({ healthy, detail: healthy ? "" : "daemon down" }),
    close: () => Promise.resolve(),
  };
}

const resource = (workerId: string, resourceId = `pid-${workerId}`): ProviderResource => ({ resourceId, resourceType: "process_id", workerId, createdAtMs: 0 });

describe("job service reads", () => {
  let store: Store;
  let clock: ManualClock;
  const statements: string[] = [];
  const providers = new Map<string, ProviderSlot>();
  let client: ReturnType<typeof createClient<typeof JobService>>;
  let api: Api;

  beforeEach(async () => {
    providers.clear();
    api = await startApi({ providers, databaseLog: (event) => void statements.push(event.query.sql) });
    ({ store, clock } = api);
    // The reads need the read scope, as in production.
    client = (await api.keyWith("reader", ["read"])).jobs;
  });
  afterEach(async () => {
    await api.close();
  });

  /** Statements that read the workers table, issued while `run` ran. */
  async function workerReads(run: () => Promise<unknown>): Promise<number> {
    statements.length = 0;
    await run();
    return statements.filter((sql) => /^select .* from "workers"/.test(sql)).length;
  }

  it("ListJobs returns each job with its attempts, reading the page's workers in one query", async () => {
    await driveJob(store, clock, "retried", "destroyed", { attempts: 2 });
    await driveJob(store, clock, "once", "running");
    await driveJob(store, clock, "waiting", "queued");
    let jobs: Awaited<ReturnType<typeof client.listJobs>>["jobs"] = [];
    const reads = await workerReads(async () => ({ jobs } = await client.listJobs({ limit: 10 })));
    assert.equal(reads, 1);
    const attempts = Object.fromEntries(jobs.map((j) => [j.id, j.attemptHistory.map((a) => a.workerId)]));
    assert.deepEqual(attempts, { retried: ["retried-w1", "retried-w2"], once: ["once-w1"], waiting: [] });
  });

  it("GetJob shows a finished job's webhook deliveries, their URLs without query or credentials", async () => {
    await driveJob(store, clock, "hooked", "ended", { spec: { notify: ["https://user:pw@hooks.example.com/a?token=s3cret", "https://b.example.com/"] } });
    const [taken] = await store.webhooks.takeDue(clock.nowMs(), clock.nowMs() + 1000, 1);
    await store.webhooks.markFailedAttempt(taken.id, 1, { status: 503, error: "answered HTTP 503 (only 2xx delivers)" }, clock.nowMs() + 10_000);
    const job = await client.getJob({ id: "hooked" });
    const shown = job.deliveries.map((d) => [d.url, d.state, d.attempts, d.lastStatus, d.lastError, d.nextAttemptAt !== undefined]).sort();
    const expected = [
      ["https://b.example.com/", "pending", 0, 0, "", true],
      ["https://hooks.example.com/a", "pending", 0, 0, "", true],
    ];
    const tried = expected.find((e) => taken.url.includes(new URL(e[0] as string).host))!;
    tried.splice(2, 3, 1, 503, "answered HTTP 503 (only 2xx delivers)");
    assert.deepEqual(shown, expected);
    const text = job.deliveries.map((d) => `${d.url} ${d.lastError}`).join(" ");
    assert.ok(!text.includes("s3cret") && !text.includes("pw@"), text);
    // A caller without the read scope sees the origins only.
    const row = (await store.jobs.get("hooked"))!;
    const origins = toJob(row, [], false, await store.webhooks.listOfJob("hooked")).deliveries.map((d) => d.url).sort();
    assert.deepEqual(origins, ["https://b.example.com", "https://hooks.example.com"]);
    await driveJob(store, clock, "running", "running", { spec: { notify: ["https://b.example.com/"] } });
    assert.deepEqual((await client.getJob({ id: "running" })).deliveries, [], "none before the end");
  });

  it("ListProviders counts orphans with one worker query per provider", async () => {
    const live = await driveJob(store, clock, "live", "running");
    const done = await driveJob(store, clock, "done", "destroyed");
    const found = [resource(live.workers[0].id, live.workers[0].provider_resource_id!), resource(done.workers[0].id), resource("never-recorded")];
    providers.set("local", { provider: fakeProvider("local", async () => found), maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1" });
    let listed: Awaited<ReturnType<typeof client.listProviders>>["providers"] = [];
    const reads = await workerReads(async () => ({ providers: listed } = await client.listProviders({})));
    assert.equal(listed[0].orphans, 2, "the destroyed worker's resource and the unrecorded one");
    assert.equal(listed[0].orphansError, "");
    assert.equal(reads, 2, "one to count live workers, one for the provider's resources");
  });

  it("ListProviders reports an unknown orphan count as an error, never as 0 orphans", async () => {
    providers.set("local", { provider: fakeProvider("local", () => Promise.reject(new Error("permission denied"))), maxWorkers: 4, workerServerUrl: "" });
    providers.set("docker", { provider: fakeProvider("docker", async () => [resource("x")], false), maxWorkers: 4, workerServerUrl: "" });
    const byName = Object.fromEntries((await client.listProviders({})).providers.map((p) => [p.name, p]));
    assert.match(byName.local.orphansError, /listing its resources failed: permission denied/);
    assert.match(byName.docker.orphansError, /unhealthy/);
  });

  it("GetJob of a job removed by retention says when, instead of not found", async () => {
    await driveJob(store, clock, "old", "destroyed");
    clock.advance(10_000);
    assert.equal(await store.retention.removeFinished(clock.nowMs(), clock.nowMs(), 10), 1);
    const removed = await client.getJob({ id: "old" }).catch((err: unknown) => ConnectError.from(err));
    assert.ok(removed instanceof ConnectError);
    assert.equal(removed.code, Code.NotFound);
    assert.match(removed.rawMessage, /^job old was removed by retention at \d{4}-\d\d-\d\dT.*HODEI_RETENTION/);
    const unknown = await client.getJob({ id: "never" }).catch((err: unknown) => ConnectError.from(err));
    assert.ok(unknown instanceof ConnectError);
    assert.equal(unknown.rawMessage, "job never not found");
  });
});

describe("parseStateFilter", () => {
  it("splits on commas, trims and drops duplicates", () => {
    assert.deepEqual(parseStateFilter(["running, queued", "queued", "", "running"]), ["running", "queued"]);
  });

  it("refuses more than 32 entries, counted after splitting, naming the field", () => {
    assert.equal(parseStateFilter([Array(32).fill("queued").join(",")]).length, 1);
    for (const entries of [Array(33).fill("queued"), [Array(33).fill("queued").join(",")], ["a,b", ...Array(31).fill("c")]]) {
      assert.throws(() => parseStateFilter(entries), (err: unknown) => err instanceof InvalidInputError && err.field === "states" && /at most 32/.test(err.message));
    }
  });

  it("names an unknown state without echoing all of a huge one", () => {
    assert.throws(
      () => parseStateFilter(["x".repeat(10_000)]),
      (err: unknown) => err instanceof InvalidInputError && err.message.length < 300 && /unknown state "x{40}\.\.\."/.test(err.message),
    );
  });
});
