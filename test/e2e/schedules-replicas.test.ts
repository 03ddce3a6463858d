/**
 * Schedules end to end on two replicas sharing one database (a SQLite file, and PostgreSQL when
 * available), with the local provider: a schedule every second (6 fields) fires exactly one job
 * per tick while the leader is killed with SIGKILL (the other takes over) and the killed replica
 * comes back. Ticks are read from each job's hodei.io/schedule-tick label: none twice, and none
 * missing between the first and the last (every outage here is shorter than the 30 s grace, so
 * the missed policy never applies and every tick must fire). No worker process is left.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type Job, JobService, ScheduleService } from "../../src/gen/hodei/v1/api_pb.js";
import { skipWithoutPostgres, startPostgres, type TestPostgres } from "../fixtures/postgres.js";
import { eventually, leftoverProcesses, sendKey, type ServerProcess, startServerProcess } from "./harness.js";
import { type Cluster, type NewDatabase, startReplicas, stopCluster } from "./replica-tests.js";

const FINAL = new Set(["succeeded", "failed", "canceled", "timed_out"]);

function clients(server: ServerProcess) {
  const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] });
  return { jobs: createClient(JobService, transport), schedules: createClient(ScheduleService, transport) };
}

/** Every job the schedule fired, through ListJobs by its label (all pages). */
async function jobsOf(server: ServerProcess, name: string): Promise<Job[]> {
  const { jobs } = clients(server);
  const all: Job[] = [];
  let pageToken = "";
  do {
    const page = await jobs.listJobs({ labelSelector: `hodei.io/schedule=${name}`, limit: 500, pageToken });
    all.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

/** The ticks of the jobs, in seconds since the epoch, sorted; asserts each job says which schedule fired it. */
function ticksOf(jobs: Job[], name: string): number[] {
  for (const job of jobs) assert.equal(job.scheduleName, name, `job ${job.id} names its schedule`);
  return jobs.map((job) => Date.parse(job.labels["hodei.io/schedule-tick"]) / 1000).sort((a, b) => a - b);
}

async function isLeader(r: ServerProcess): Promise<boolean> {
  return /^hodei_leader 1$/m.test(await (await fetch(`${r.url}/metrics`)).text());
}

function scheduleTests(newDatabase: NewDatabase): void {
  let cluster: Cluster | undefined;
  afterEach(async () => {
    if (cluster) await stopCluster(cluster);
    cluster = undefined;
  });

  it("fires a per-second schedule once per tick, with no gap, while the leader is killed and comes back", async () => {
    const leaseMs = 2000;
    const env = { HODEI_LEADER_LEASE_MS: String(leaseMs), HODEI_LOCAL_MAX_WORKERS: "8" };
    cluster = await startReplicas(newDatabase, 2, env);
    const c = cluster;
    const { schedules } = clients(c.replicas[0]);
    await schedules.createSchedule({ name: "every-second", cron: "* * * * * *", template: { command: ["true"] } });
    assert.ok(await eventually(async () => (await jobsOf(c.replicas[1], "every-second")).length >= 4, 30_000), "ticks fire");

    let leader = -1;
    assert.ok(await eventually(async () => (leader = (await Promise.all(c.replicas.map(isLeader))).indexOf(true)) >= 0, 10_000), "a leader");
    const killed = c.replicas[leader];
    const survivor = c.replicas[1 - leader];
    const firedBefore = (await jobsOf(survivor, "every-second")).length;
    await killed.kill();
    c.balancer.backends.splice(c.balancer.backends.indexOf(killed.workerPort), 1);
    assert.ok(await eventually(() => isLeader(survivor), 4 * leaseMs, 50), "the survivor leads");
    assert.ok(await eventually(async () => (await jobsOf(survivor, "every-second")).length >= firedBefore + 4, 30_000), "ticks fire on the survivor");

    // The killed replica comes back (same database and data directory); both fire nothing twice.
    const back = await startServerProcess(killed.env, { dataDir: c.dataDir, clusterId: c.clusterId });
    c.replicas[leader] = back;
    c.balancer.backends.push(back.workerPort);
    const firedAfterRestart = (await jobsOf(back, "every-second")).length;
    assert.ok(await eventually(async () => (await jobsOf(back, "every-second")).length >= firedAfterRestart + 4, 30_000), "ticks fire with both replicas again");

    const paused = await clients(back).schedules.pauseSchedule({ name: "every-second" });
    assert.equal(paused.paused, true);
    // A pass that was firing when the pause landed may add its tick: read once everything settled.
    const final = await eventually(async () => {
      const jobs = await jobsOf(survivor, "every-second");
      return jobs.every((j) => FINAL.has(j.state)) ? jobs : null;
    }, 60_000);
    assert.ok(final, "every fired job ended");
    const ticks = ticksOf(final, "every-second");
    assert.equal(new Set(ticks).size, ticks.length, `no tick fired twice: ${ticks.join(",")}`);
    const gaps = ticks.slice(1).filter((t, i) => t - ticks[i] !== 1);
    assert.deepEqual(gaps, [], `no tick missing between the first and the last (${ticks.length} ticks)`);
    assert.deepEqual(final.filter((j) => j.state !== "succeeded").map((j) => `${j.id} ${j.state} ${j.reason}`), []);
    const schedule = await clients(survivor).schedules.getSchedule({ name: "every-second" });
    assert.equal(Number(schedule.firedTicks), ticks.length, "the schedule counted each job it fired");
    assert.equal(Number(schedule.skippedTicks), 0);
    console.log(`every-second through a SIGKILL of the leader and its return: ${ticks.length} ticks, none twice, none missing`);
    assert.deepEqual(await leftoverProcesses(c, 30_000), [], "no worker process left");
  });
}

describe("schedules on two replicas on one SQLite file", { concurrency: false }, () => {
  scheduleTests(async (dataDir) => `sqlite:${join(dataDir, "hodei.db")}`);
});

describe("schedules on two replicas on PostgreSQL", { concurrency: false, skip: skipWithoutPostgres("schedules on PostgreSQL") }, () => {
  let postgres: TestPostgres | undefined;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres?.close();
    assert.deepEqual(postgres?.leftoverProcesses() ?? [], [], "the fixture's cluster left no process");
  });
  scheduleTests(() => postgres!.createDatabase("hodei_schedules"));
});
