/**
 * `hodei schedule` through the real CLI and server (local provider): create, ls --json (the
 * contract: name, cron, nextRunAt, lastJobId, paused), get, pause, resume, rm, and the errors that
 * name the field; and a per-second schedule through a restart of the whole server: each tick one
 * job, none twice, none missing (the outage is shorter than the 30 s grace). No worker process left.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually, type JobJson, jsonCli, leftoverProcesses, runCli, type ServerProcess, startServerProcess } from "./harness.js";

interface ScheduleJson {
  name: string;
  cron: string;
  timezone: string;
  nextRunAt: string | null;
  lastJobId: string;
  paused: boolean;
  missed: string;
  concurrency: string;
  template: { command: string[]; env: Record<string, string>; labels: Record<string, string>; timeoutSeconds: number; maxAttempts: number };
  firedTicks: string;
  skippedTicks: string;
}

/** `hodei schedule create ... --json -- COMMAND` (jsonCli would put --json after the command). */
async function createJson(server: ServerProcess, options: string[], command: string[]): Promise<ScheduleJson> {
  const result = await runCli(server, ["schedule", "create", ...options, "--json", "--", ...command]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ScheduleJson;
}

describe("hodei schedule", { concurrency: false }, () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess();
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  it("creates, lists, shows, pauses, resumes and removes a schedule, with --json", async () => {
    const created = await createJson(
      server,
      ["nightly", "--cron", "30 2 * * *", "--timezone", "Europe/Madrid", "--concurrency", "forbid", "--missed", "run-once", "-e", "GREETING=hi", "--label", "team=infra", "--timeout", "120", "--max-attempts", "2"],
      ["sh", "-c", "echo $GREETING"],
    );
    assert.equal(created.name, "nightly");
    assert.deepEqual(created.template.command, ["sh", "-c", "echo $GREETING"]);
    assert.deepEqual(created.template.env, { GREETING: "hi" });
    assert.deepEqual(created.template.labels, { team: "infra" });
    assert.equal(created.template.timeoutSeconds, 120);
    assert.equal(created.template.maxAttempts, 2);
    assert.match(created.nextRunAt ?? "", /T0[01]:30:00Z$/, "02:30 in Madrid is 00:30 or 01:30 UTC");

    const listed = await jsonCli<ScheduleJson[]>(server, ["schedule", "ls"]);
    assert.equal(listed.length, 1);
    for (const field of ["name", "cron", "nextRunAt", "lastJobId", "paused"]) assert.ok(field in listed[0], `ls --json has ${field}`);
    assert.deepEqual(
      { name: listed[0].name, cron: listed[0].cron, nextRunAt: listed[0].nextRunAt, lastJobId: listed[0].lastJobId, paused: listed[0].paused },
      { name: "nightly", cron: "30 2 * * *", nextRunAt: created.nextRunAt, lastJobId: "", paused: false },
    );
    const shown = await jsonCli<ScheduleJson>(server, ["schedule", "get", "nightly"]);
    assert.equal(shown.concurrency, "forbid");
    assert.equal(shown.missed, "run-once");
    assert.equal(shown.timezone, "Europe/Madrid");

    assert.equal((await jsonCli<ScheduleJson>(server, ["schedule", "pause", "nightly"])).paused, true);
    assert.equal((await jsonCli<ScheduleJson[]>(server, ["schedule", "ls"]))[0].paused, true);
    assert.equal((await jsonCli<ScheduleJson>(server, ["schedule", "resume", "nightly"])).paused, false);
    const human = await runCli(server, ["schedule", "ls"]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^NAME\s+CRON\s+TIMEZONE\s+NEXT RUN\s+LAST JOB\s+PAUSED\s+COMMAND$/m);
    assert.match(human.stdout, /nightly\s+30 2 \* \* \*\s+Europe\/Madrid\s+in \d+[smhd]/);
    const details = await runCli(server, ["schedule", "get", "nightly"]);
    assert.match(details.stdout, /cron\s+30 2 \* \* \* \(Europe\/Madrid\)/);

    assert.equal((await jsonCli<ScheduleJson>(server, ["schedule", "rm", "nightly"])).name, "nightly");
    assert.deepEqual(await jsonCli<ScheduleJson[]>(server, ["schedule", "ls"]), []);
    const gone = await runCli(server, ["schedule", "get", "nightly"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /schedule nightly not found/);
  });

  it("refuses bad input with an error naming the field, and a command line without a command", async () => {
    for (const [args, message] of [
      [["schedule", "create", "Nightly_1", "--cron", "* * * * *", "--", "true"], /hodei: invalid request: name: "Nightly_1" is not a schedule name/],
      [["schedule", "create", "x", "--cron", "61 * * * *", "--", "true"], /hodei: invalid request: cron: "61 \* \* \* \*" is not a cron expression/],
      [["schedule", "create", "x", "--cron", "* * * * *", "--timezone", "Mars/Base", "--", "true"], /hodei: invalid request: timezone: "Mars\/Base" is not an IANA time zone name/],
      [["schedule", "create", "x", "--cron", "* * * * *", "--concurrency", "replace", "--", "true"], /hodei: invalid request: concurrency: "replace": use allow or forbid/],
    ] as const) {
      const result = await runCli(server, [...args]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, message);
    }
    const noCommand = await runCli(server, ["schedule", "create", "x", "--cron", "* * * * *"]);
    assert.equal(noCommand.code, 2);
    assert.match(noCommand.stderr, /nothing to run: put the job's command after "--"/);
    const secret = await runCli(server, ["schedule", "create", "x", "--cron", "* * * * *", "--secret", "TOKEN=s3cret", "--", "true"]);
    assert.equal(secret.code, 2);
    assert.match(secret.stderr, /a schedule cannot hold secrets/);
    assert.doesNotMatch(secret.stderr, /s3cret/);
    assert.deepEqual(await jsonCli<ScheduleJson[]>(server, ["schedule", "ls"]), [], "nothing was created");
  });

  it("fires a per-second schedule once per tick, none missing, through a restart of the server", async () => {
    await createJson(server, ["tick", "--cron", "* * * * * *"], ["echo", "tick"]);
    const jobs = () => jsonCli<JobJson[]>(server, ["jobs", "--label", "hodei.io/schedule=tick", "--limit", "500"]);
    assert.ok(await eventually(async () => (await jobs()).length >= 3, 30_000), "ticks fire");
    await server.stop();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    server = await startServerProcess(server.env, { dataDir: server.dataDir, clusterId: server.clusterId });
    const upAt = Date.now();
    const downSeconds = (upAt - downAt) / 1000;
    const before = (await jobs()).length;
    assert.ok(await eventually(async () => (await jobs()).length >= before + 3, 30_000), "ticks fire after the restart");
    await jsonCli(server, ["schedule", "pause", "tick"]);
    const final = await eventually(async () => {
      const all = await jobs();
      return all.every((j) => ["succeeded", "failed", "canceled", "timed_out"].includes(j.state)) ? all : null;
    }, 60_000);
    assert.ok(final);
    const ticks = final.map((j) => Date.parse((j as unknown as { labels: Record<string, string> }).labels["hodei.io/schedule-tick"]) / 1000).sort((a, b) => a - b);
    assert.equal(new Set(ticks).size, ticks.length, "no tick fired twice");
    assert.deepEqual(ticks.slice(1).filter((t, i) => t - ticks[i] !== 1), [], `no tick missing across ${downSeconds.toFixed(1)} s down (${ticks.length} ticks)`);
    // No gap (above) and ticks on both sides of the outage: every tick of the outage fired after it (within the grace).
    assert.ok(ticks[0] * 1000 < downAt && ticks[ticks.length - 1] * 1000 > upAt, "the ticks of the outage fired after it (within the grace)");
    assert.ok(final.every((j) => (j as unknown as { scheduleName: string }).scheduleName === "tick"));
    const details = await runCli(server, ["jobs", "get", final[0].id]);
    assert.match(details.stdout, /schedule\s+tick \(tick 20\d\d-\d\d-\d\dT/, "jobs get names the schedule and the tick");
    console.log(`per-second schedule through a ${downSeconds.toFixed(1)} s restart: ${ticks.length} ticks, none twice, none missing`);
    await jsonCli(server, ["schedule", "rm", "tick"]);
    assert.deepEqual(await leftoverProcesses(server), [], "no worker process left");
  });
});
