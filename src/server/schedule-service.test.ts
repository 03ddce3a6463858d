/**
 * ScheduleService over an in-process Connect transport with the real auth interceptor and store:
 * validation (errors name the field, the template's included), what a template may not hold
 * (secrets, idempotency key, run-at), the access rules (submit creates and changes its own, read
 * lists, admin changes any; env values withheld without read), pause/resume/delete, and the bounds.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import type { Scope } from "../core/scopes.js";
import { hashToken, mintApiKey } from "../core/token.js";
import { JobService, ScheduleService } from "../gen/hodei/v1/api_pb.js";
import { Store } from "../store/store.js";
import { methodScopes } from "./access.js";
import { type Api, startApi } from "../../test/fixtures/api.js";

async function outcome(call: Promise<unknown>): Promise<{ code: Code | "ok"; message: string }> {
  try {
    await call;
    return { code: "ok", message: "" };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
}

describe("ScheduleService", () => {
  let store: Store;
  let clock: ManualClock;
  let api: Api;
  let jobsFor: (key: string) => ReturnType<typeof createClient<typeof JobService>>;

  beforeEach(async () => {
    api = await startApi({ clock: new ManualClock(Date.parse("2026-01-05T12:00:30Z")) });
    ({ store, clock } = api);
    jobsFor = (key) => api.clientsFor(key).jobs;
  });
  afterEach(async () => {
    await api.close();
  });

  async function keyWith(name: string, scopes: Scope[]) {
    return (await api.keyWith(name, scopes)).schedules;
  }

  const template = { command: ["echo", "hi"], env: { GREETING: "hello" } };

  it("keeps the schedules' idempotency keys to them: SubmitJob refuses the prefix schedule:", async () => {
    const key = mintApiKey();
    await store.keys.insert({ name: "ci", keyHash: hashToken(key), scopes: ["submit", "provider:local"] }, clock.nowMs());
    const result = await outcome(jobsFor(key).submitJob({ command: ["true"], idempotencyKey: "schedule:nightly:2026-01-06T03:00:00.000Z" }));
    assert.equal(result.code, Code.InvalidArgument);
    assert.match(result.message, /^idempotencyKey: the prefix "schedule:" is reserved/);
    assert.equal(await store.countRows("jobs"), 0);
    assert.equal((await jobsFor(key).submitJob({ command: ["true"], idempotencyKey: "nightly-schedule:1" })).job?.state, "queued");
  });

  it("has an access rule for every method", () => {
    for (const method of ScheduleService.methods) assert.ok(methodScopes(ScheduleService.typeName, method.name)?.length, method.name);
  });

  it("creates a schedule whose first tick is the next after now, and answers it with its template", async () => {
    const ci = await keyWith("ci", ["submit", "provider:local"]);
    const created = await ci.createSchedule({ name: "every-five", cron: "*/5 * * * *", timezone: "Europe/Madrid", concurrency: "forbid", template });
    assert.equal(created.name, "every-five");
    assert.equal(created.missed, "skip");
    assert.equal(created.concurrency, "forbid");
    assert.equal(created.createdBy, "ci");
    assert.equal(created.paused, false);
    assert.equal(created.nextRunAt && new Date(Number(created.nextRunAt.seconds) * 1000).toISOString(), "2026-01-05T12:05:00.000Z");
    assert.deepEqual(created.template?.command, ["echo", "hi"]);
    assert.equal(created.template?.provider, "local", "the default provider, resolved when created");
    assert.deepEqual(created.template?.labels, {}, "the schedule's own label is added to each tick's job, not shown in the template");
    assert.deepEqual(created.template?.env, { GREETING: "" }, "a submit key does not see env values");
    assert.equal(created.envRedacted, true);
    const again = await outcome(ci.createSchedule({ name: "every-five", cron: "* * * * *", template }));
    assert.equal(again.code, Code.AlreadyExists);
    assert.match(again.message, /^name: a schedule named every-five already exists/);
  });

  it("refuses bad settings and templates with errors that name the field, and stores nothing", async () => {
    const admin = await keyWith("admin", ["admin"]);
    const cases: [Parameters<typeof admin.createSchedule>[0], RegExp][] = [
      [{ name: "Bad_Name", cron: "* * * * *", template }, /^name: /],
      [{ name: "x".repeat(64), cron: "* * * * *", template }, /^name: at most 63 characters/],
      [{ name: "ok", cron: "every day", template }, /^cron: "every day" is not a cron expression/],
      [{ name: "ok", cron: "* * * * *", timezone: "Nowhere/City", template }, /^timezone: /],
      [{ name: "ok", cron: "* * * * *", missed: "burst", template }, /^missed: /],
      [{ name: "ok", cron: "* * * * *" }, /^template: required/],
      [{ name: "ok", cron: "* * * * *", template: { command: [] } }, /^template\.command: must not be empty/],
      [{ name: "ok", cron: "* * * * *", template: { ...template, provider: "mars" } }, /^template\.provider: unknown provider "mars"/],
      [{ name: "ok", cron: "* * * * *", template: { ...template, secrets: { TOKEN: "s3cret" } } }, /^template\.secrets: a schedule cannot hold secrets/],
      [{ name: "ok", cron: "* * * * *", template: { ...template, idempotencyKey: "k" } }, /^template\.idempotencyKey: each tick sets its own/],
      [{ name: "ok", cron: "* * * * *", template: { ...template, delaySeconds: 5 } }, /^template\.delaySeconds: /],
      [{ name: "ok", cron: "* * * * *", template: { ...template, labels: { "hodei.io/schedule": "x" } } }, /^template\.labels: hodei\.io\/schedule is set by the schedule/],
      [{ name: "ok", cron: "* * * * *", template: { ...template, labels: Object.fromEntries(Array.from({ length: 63 }, (_, i) => [`l${i}`, "v"])) } }, /^template\.labels: at most 64 labels/],
    ];
    for (const [request, message] of cases) {
      const result = await outcome(admin.createSchedule(request));
      assert.equal(result.code, Code.InvalidArgument, `${JSON.stringify(request).slice(0, 100)}: ${result.message}`);
      assert.match(result.message, message);
      assert.doesNotMatch(result.message, /s3cret/, "a secret's value is never echoed");
    }
    assert.equal(await store.schedules.count(), 0);
  });

  it("follows the access rules: submit creates (with the provider's scope) and changes its own; read lists; admin changes any", async () => {
    const ci = await keyWith("ci", ["submit", "provider:local"]);
    const other = await keyWith("other", ["submit", "provider:local"]);
    const reader = await keyWith("reader", ["read"]);
    const admin = await keyWith("admin", ["admin"]);
    assert.equal((await outcome(ci.createSchedule({ name: "docker-job", cron: "* * * * *", template: { ...template, provider: "docker" } }))).code, Code.PermissionDenied);
    assert.equal((await outcome(reader.createSchedule({ name: "r", cron: "* * * * *", template }))).code, Code.PermissionDenied);
    await ci.createSchedule({ name: "mine", cron: "* * * * *", template });
    assert.equal((await ci.getSchedule({ name: "mine" })).name, "mine");
    assert.equal((await outcome(other.getSchedule({ name: "mine" }))).code, Code.PermissionDenied);
    assert.equal((await outcome(ci.listSchedules({}))).code, Code.PermissionDenied, "listing needs read");
    const listed = await reader.listSchedules({});
    assert.deepEqual(listed.schedules.map((s) => s.name), ["mine"]);
    assert.deepEqual(listed.schedules[0].template?.env, { GREETING: "hello" }, "read sees env values");
    const denied = await outcome(other.pauseSchedule({ name: "mine" }));
    assert.equal(denied.code, Code.PermissionDenied);
    assert.match(denied.message, /to change schedule mine, which it did not create/);
    assert.equal((await outcome(reader.deleteSchedule({ name: "mine" }))).code, Code.PermissionDenied);
    assert.equal((await ci.pauseSchedule({ name: "mine" })).paused, true);
    assert.equal((await admin.resumeSchedule({ name: "mine" })).paused, false);
    assert.equal((await outcome(admin.getSchedule({ name: "nope" }))).code, Code.NotFound);
  });

  it("pauses and resumes idempotently; resuming goes on from the next tick after now; deleting answers the schedule once", async () => {
    const admin = await keyWith("admin", ["admin"]);
    await admin.createSchedule({ name: "s", cron: "* * * * *", template, paused: true });
    assert.equal((await admin.getSchedule({ name: "s" })).paused, true);
    assert.equal((await admin.pauseSchedule({ name: "s" })).paused, true, "pausing a paused schedule answers it unchanged");
    clock.advance(10 * 60_000);
    const resumed = await admin.resumeSchedule({ name: "s" });
    assert.equal(resumed.paused, false);
    assert.equal(new Date(Number(resumed.nextRunAt!.seconds) * 1000).toISOString(), "2026-01-05T12:11:00.000Z");
    assert.equal((await admin.resumeSchedule({ name: "s" })).nextRunAt?.seconds, resumed.nextRunAt?.seconds, "resuming a running schedule changes nothing");
    assert.equal((await admin.deleteSchedule({ name: "s" })).name, "s");
    assert.equal((await outcome(admin.deleteSchedule({ name: "s" }))).code, Code.NotFound);
  });

  it("lists by name a page at a time, with bounded page sizes and checked tokens", async () => {
    const admin = await keyWith("admin", ["admin"]);
    for (const name of ["c", "a", "b"]) await admin.createSchedule({ name, cron: "* * * * *", template });
    const first = await admin.listSchedules({ limit: 2 });
    assert.deepEqual(first.schedules.map((s) => s.name), ["a", "b"]);
    const second = await admin.listSchedules({ limit: 2, pageToken: first.nextPageToken });
    assert.deepEqual(second.schedules.map((s) => s.name), ["c"]);
    assert.equal(second.nextPageToken, "");
    assert.equal((await outcome(admin.listSchedules({ limit: 501 }))).code, Code.InvalidArgument);
    assert.match((await outcome(admin.listSchedules({ pageToken: "%%%" }))).message, /^pageToken: /);
  });
});
