/**
 * History through the CLI on the local provider: a finished job is removed by retention once it
 * finished longer ago than HODEI_RETENTION (here 1s), after which `hodei jobs get` says it was
 * removed and exits non-zero; and `hodei providers` shows the orphan count it knows to be exact.
 * Waits are on the API's answers (polling until the job is gone), never a fixed sleep.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  eventually,
  type JobJson,
  jsonCli,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  startServerProcess,
  stopLeavingNothing,
  type TokenJson,
  type WorkerJson,
} from "./harness.js";

describe("history", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess({ HODEI_RETENTION: "1s" });
  });
  after(async () => {
    await stopLeavingNothing(server);
  });

  it("removes a finished job after HODEI_RETENTION; jobs get then says it was removed and exits 1", async () => {
    const run = await runCli(server, ["run", "--json", "--", "echo", "short-lived"]);
    assert.equal(run.code, 0, run.stderr);
    const job = JSON.parse(run.stdout) as JobJson;
    assert.equal(job.state, "succeeded");

    const gone = await eventually(async () => {
      const result = await runCli(server, ["jobs", "get", job.id]);
      return result.code === 0 ? null : result;
    }, 30_000);
    assert.ok(gone, "the job was removed within 30s");
    assert.equal(gone.code, 1);
    assert.equal(gone.stdout, "");
    assert.match(gone.stderr, new RegExp(`^hodei: job ${job.id} was removed by retention at .*HODEI_RETENTION`));

    const workers = await jsonCli<WorkerJson[]>(server, ["workers", "--all"]);
    assert.equal(workers.filter((w) => w.jobId === job.id).length, 0, "its worker went with it");
    const tokens = await jsonCli<TokenJson[]>(server, ["tokens"]);
    assert.equal(tokens.filter((t) => t.jobId === job.id).length, 0, "its OTP token went with it");
    const unknown = await runCli(server, ["jobs", "get", "no-such-job"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /job no-such-job not found/);
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("hodei providers shows the orphan count, and --json says it is exact", async () => {
    const table = await runCli(server, ["providers"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout.split("\n")[0], /ORPHANS/);
    assert.match(table.stdout.split("\n")[1], /^local\s.*\s0$/);
    const [local] = await jsonCli<{ name: string; orphans: number; orphansError: string }[]>(server, ["providers"]);
    assert.deepEqual([local.name, local.orphans, local.orphansError], ["local", 0, ""]);
  });
});
