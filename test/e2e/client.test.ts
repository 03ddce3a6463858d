/**
 * hodei/client against a real server on the local provider: submit, logs as an async iterator
 * (entries arrive while the job runs), wait, its timeout, cancel, rerun, schedules (create, list,
 * pause, resume, fire, remove), and the typed errors.
 * Then the package as a dependent project sees it: `import { createClient } from "hodei/client"`
 * from a project whose node_modules/hodei is this repository, run by node and typechecked by tsc.
 * Every test ends by proving that no worker process of its cluster is left.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, afterEach, before, describe, it } from "node:test";
import { createClientOn } from "../../src/client/client.js";
import { createTransport } from "../../src/client/transport.js";
import {
  createClient,
  HodeiError,
  type HodeiClient,
  InvalidArgumentError,
  NotFoundError,
  UnauthenticatedError,
  WaitTimeoutError,
} from "../../src/client/index.js";
import { eventually, leftoverProcesses, ROOT, type ServerProcess, startServerProcess, stopLeavingNothing } from "./harness.js";

const execFileAsync = promisify(execFile);
const text = (data: Uint8Array) => Buffer.from(data).toString("utf8");

describe("hodei/client", () => {
  let server: ServerProcess;
  let hodei: HodeiClient;
  let scratch: string;

  before(async () => {
    server = await startServerProcess();
    hodei = createClient({ baseUrl: server.url, token: server.adminKey });
    scratch = mkdtempSync(join(tmpdir(), "hodei-client-"));
  });
  afterEach(async () => {
    const left = await leftoverProcesses(server);
    assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
  });
  after(async () => {
    rmSync(scratch, { recursive: true, force: true });
    await stopLeavingNothing(server);
  });

  it("follows a job's logs as an async iterator: entries arrive while it runs, and the ended job is the return value", async () => {
    const go = join(scratch, "go");
    const job = await hodei.submit({ script: `echo first\nwhile [ ! -e ${go} ]; do sleep 0.05; done\necho second\n` });
    assert.equal(job.state, "queued");

    const entries = hodei.logs(job.id, { follow: true });
    const first = await entries.next();
    assert.equal(first.done, false);
    assert.equal(text(first.value!.data as Uint8Array), "first\n");
    // The job cannot go on before the file exists: this entry arrived while it was running.
    assert.equal((await hodei.get(job.id)).state, "running");
    writeFileSync(go, "");

    const rest: string[] = [];
    let next = await entries.next();
    while (!next.done) {
      rest.push(text(next.value.data));
      next = await entries.next();
    }
    assert.equal(rest.join(""), "second\n");
    assert.equal(next.value?.state, "succeeded");
    assert.equal(next.value?.exitCode, 0);
  });

  it("learns the end from the log stream's last entry: wait and a follow make no GetJob call", async () => {
    const calls: string[] = [];
    const counting = createClientOn(
      createTransport({ baseUrl: server.url, token: server.adminKey }, [
        (next) => async (req) => {
          calls.push(req.method.name);
          return next(req);
        },
      ]),
    );
    const job = await counting.submit({ command: ["sh", "-c", "echo out; exit 4"] });
    const ended = await counting.wait(job.id, { onLog: () => {} });
    assert.equal(ended.state, "failed");
    assert.equal(ended.exitCode, 4);
    const again = counting.logs(job.id, { follow: true });
    const seen: string[] = [];
    let next = await again.next();
    for (; !next.done; next = await again.next()) seen.push(text(next.value.data));
    assert.equal(seen.join(""), "out\n");
    assert.equal(next.value?.id, job.id);
    assert.deepEqual(calls, ["SubmitJob", "GetLogs", "GetLogs"]);
  });

  it("wait resolves with the ended job; list finds it; rerun runs its spec again as a new job", async () => {
    const job = await hodei.submit({ command: ["sh", "-c", "echo out; exit 3"], labels: { suite: "client" } });
    const seen: string[] = [];
    const ended = await hodei.wait(job.id, { timeoutMs: 60_000, onLog: (entry) => seen.push(text(entry.data)) });
    assert.equal(ended.id, job.id);
    assert.equal(ended.state, "failed");
    assert.equal(ended.exitCode, 3);
    assert.deepEqual(seen, ["out\n"]);
    // An ended job: wait answers at once, with the same job.
    assert.equal((await hodei.wait(job.id)).state, "failed");

    const { jobs } = await hodei.list({ labelSelector: "suite=client", states: ["failed"] });
    assert.deepEqual(
      jobs.map((j) => j.id),
      [job.id],
    );

    const again = await hodei.rerun(job.id);
    assert.notEqual(again.id, job.id);
    assert.equal(again.rerunOf, job.id);
    const rerunEnded = await hodei.wait(again.id, { timeoutMs: 60_000 });
    assert.equal(rerunEnded.exitCode, 3);
  });

  it("wait gives up after timeoutMs with a WaitTimeoutError; cancel then ends the job", async () => {
    const job = await hodei.submit({ command: ["sleep", "60"] });
    const started = Date.now();
    const err = await hodei.wait(job.id, { timeoutMs: 500 }).then(
      () => assert.fail("wait should time out"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WaitTimeoutError, String(err));
    assert.ok(err instanceof HodeiError);
    assert.equal(err.code, "deadline_exceeded");
    assert.equal(err.jobId, job.id);
    assert.ok(Date.now() - started < 20_000, "wait returned near its timeout");
    assert.ok(!["succeeded", "failed", "canceled", "timed_out"].includes((await hodei.get(job.id)).state), "the job goes on");

    await hodei.cancel(job.id);
    const ended = await hodei.wait(job.id, { timeoutMs: 60_000 });
    assert.equal(ended.state, "canceled");
  });

  it("manages a schedule: created, listed, fired (a job labelled with its name), paused, resumed, removed", async () => {
    const name = "client-every-second";
    const template = { command: ["sh", "-c", "echo tick"], labels: { suite: "client-schedule" } };
    const created = await hodei.schedules.create({ name, cron: "* * * * * *", template });
    assert.equal(created.name, name);
    assert.equal(created.paused, false);
    assert.equal(created.concurrency, "allow");
    assert.deepEqual(created.template?.command, template.command);
    assert.ok(created.nextRunAt, "an active schedule has its next tick");

    const { schedules, nextPageToken } = await hodei.schedules.list();
    assert.deepEqual(
      schedules.map((s) => s.name),
      [name],
    );
    assert.equal(nextPageToken, "");

    const fired = () => hodei.list({ labelSelector: `hodei.io/schedule=${name}`, limit: 500 }).then((page) => page.jobs);
    const first = await eventually(async () => (await fired())[0], 30_000);
    assert.ok(first, "a tick fired a job");
    assert.equal(first.scheduleName, name);
    assert.equal(first.labels.suite, "client-schedule");
    assert.equal((await hodei.wait(first.id, { timeoutMs: 60_000 })).state, "succeeded");
    assert.equal((await hodei.schedules.get(name)).firedTicks > 0n, true);

    const paused = await hodei.schedules.pause(name);
    assert.equal(paused.paused, true);
    assert.equal((await hodei.schedules.get(name)).paused, true);
    const resumed = await hodei.schedules.resume(name);
    assert.equal(resumed.paused, false);
    assert.ok(resumed.nextRunAt, "a resumed schedule has its next tick");

    const removed = await hodei.schedules.remove(name);
    assert.equal(removed.name, name);
    assert.deepEqual((await hodei.schedules.list()).schedules, []);
    const gone = await hodei.schedules.get(name).catch((e: unknown) => e);
    assert.ok(gone instanceof NotFoundError, String(gone));
    // The jobs it fired stay; each is let end so that no worker is left.
    const jobs = await fired();
    assert.ok(jobs.length >= 1);
    for (const job of jobs) assert.equal((await hodei.wait(job.id, { timeoutMs: 60_000 })).state, "succeeded");
  });

  it("fails schedule calls with the same typed errors: an unknown name, a bad cron", async () => {
    for (const call of [hodei.schedules.get, hodei.schedules.pause, hodei.schedules.resume, hodei.schedules.remove]) {
      const missing = await call("no-such-schedule").catch((e: unknown) => e);
      assert.ok(missing instanceof NotFoundError, String(missing));
      assert.equal(missing.code, "not_found");
      assert.match(missing.message, /schedule no-such-schedule not found/);
    }
    const badCron = await hodei.schedules.create({ name: "bad-cron", cron: "61 * * * *", template: { command: ["true"] } }).catch((e: unknown) => e);
    assert.ok(badCron instanceof InvalidArgumentError, String(badCron));
    assert.equal(badCron.code, "invalid_argument");
    assert.match(badCron.message, /^cron: /);
    const noCommand = await hodei.schedules.create({ name: "no-command", cron: "* * * * *", template: {} }).catch((e: unknown) => e);
    assert.ok(noCommand instanceof InvalidArgumentError, String(noCommand));
    assert.deepEqual((await hodei.schedules.list()).schedules, [], "nothing refused was stored");
  });

  it("fails with typed errors that carry the Connect code", async () => {
    const missing = await hodei.get("no-such-job").catch((e: unknown) => e);
    assert.ok(missing instanceof NotFoundError, String(missing));
    assert.ok(missing instanceof HodeiError);
    assert.equal(missing.code, "not_found");
    assert.match(missing.message, /no-such-job/);

    const invalid = await hodei.submit({}).catch((e: unknown) => e);
    assert.ok(invalid instanceof InvalidArgumentError, String(invalid));
    assert.equal(invalid.code, "invalid_argument");

    const stranger = createClient({ baseUrl: server.url, token: "hodei_not-a-key" });
    const refused = await stranger.list().catch((e: unknown) => e);
    assert.ok(refused instanceof UnauthenticatedError, String(refused));
    assert.equal(refused.code, "unauthenticated");
    // The log stream is refused the same way.
    const streamRefused = await stranger
      .logs("any")
      .next()
      .catch((e: unknown) => e);
    assert.ok(streamRefused instanceof UnauthenticatedError, String(streamRefused));

    assert.throws(() => createClient({ baseUrl: "localhost:7070" }), InvalidArgumentError);
  });

  it("is importable as hodei/client by a project that depends on this package, with its types", async () => {
    const project = join(scratch, "app");
    mkdirSync(join(project, "node_modules"), { recursive: true });
    symlinkSync(ROOT, join(project, "node_modules", "hodei"));
    assert.ok(existsSync(join(ROOT, "dist", "client.js")), "npm run build first");
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module", dependencies: { hodei: "file:.." } }));
    writeFileSync(
      join(project, "main.mjs"),
      `import { createClient, NotFoundError } from "hodei/client";
const hodei = createClient({ baseUrl: process.env.URL, token: process.env.TOKEN });
const job = await hodei.submit({ command: ["echo", "from a dependent project"] });
let output = "";
for await (const entry of hodei.logs(job.id, { follow: true })) output += Buffer.from(entry.data).toString();
const ended = await hodei.wait(job.id, { timeoutMs: 60000 });
const missing = await hodei.get("nope").catch((e) => e);
console.log(JSON.stringify({ state: ended.state, output, notFound: missing instanceof NotFoundError }));
`,
    );
    const { stdout } = await execFileAsync(process.execPath, ["main.mjs"], { cwd: project, env: { PATH: process.env.PATH, URL: server.url, TOKEN: server.adminKey } });
    assert.deepEqual(JSON.parse(stdout), { state: "succeeded", output: "from a dependent project\n", notFound: true });

    // Types: a correct use typechecks, a wrong one does not (so the types are not `any`).
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2023", strict: true, noEmit: true, skipLibCheck: true, typeRoots: [join(ROOT, "node_modules", "@types")], types: ["node"] },
        files: ["use.ts"],
      }),
    );
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const typecheck = (source: string) => {
      writeFileSync(join(project, "use.ts"), source);
      return execFileAsync(process.execPath, [tsc, "-p", project], { cwd: project }).then(
        () => "",
        (err: { stdout: string }) => err.stdout,
      );
    };
    const good = `import { createClient, HodeiError, type Job, type LogEntry, type Schedule } from "hodei/client";
export async function run(): Promise<Job> {
  const hodei = createClient({ baseUrl: "http://127.0.0.1:7070", token: "t", caCert: Buffer.from("") });
  const job = await hodei.submit({ command: ["true"], env: { A: "1" }, timeoutSeconds: 5 });
  for await (const entry of hodei.logs(job.id, { follow: true })) { const data: Uint8Array = (entry satisfies LogEntry).data; void data; }
  const schedule: Schedule = await hodei.schedules.create({ name: "n", cron: "0 3 * * *", template: { command: ["true"] } });
  void schedule.nextRunAt;
  try { return await hodei.wait(job.id, { timeoutMs: 1000 }); } catch (err) { if (err instanceof HodeiError) console.log(err.code); throw err; }
}
`;
    assert.equal(await typecheck(good), "");
    const wrong = `import { createClient } from "hodei/client";
export const p = createClient({ baseUrl: "x" }).submit({ command: 42 });
`;
    assert.match(await typecheck(wrong), /use\.ts.*error TS2322/);
  });
});
