/**
 * `hodei server` on PostgreSQL (HODEI_DATABASE_URL=postgres://USER@127.0.0.1:PORT/DB) through the
 * CLI on the local provider: jobs run, logs follow, a cancel reaches the agent, /readyz follows the
 * database, and three servers starting at once on a fresh database migrate it once. Every test
 * proves no worker process is left; the fixture proves its cluster left no process.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { startPostgres, skipWithoutPostgres, type TestPostgres } from "../fixtures/postgres.js";
import { anyClusterProcesses, eventually, type JobJson, jobWhen, jsonCli, killCluster, leftoverProcesses, runCli, type ServerProcess, spawnCli, startServerProcess, stopLeavingNothing, waitDestroyed, type WorkerJson } from "./harness.js";

const SKIP = skipWithoutPostgres("hodei server on PostgreSQL");

describe("hodei server on PostgreSQL", { skip: SKIP }, () => {
  let postgres: TestPostgres;
  let url: string;
  let server: ServerProcess;

  before(async () => {
    postgres = await startPostgres();
    url = await postgres.createDatabase("hodei_e2e");
    server = await startServerProcess({ HODEI_DATABASE_URL: url, HODEI_DB_CONNECT_TIMEOUT_MS: "1000" });
  });
  after(async () => {
    await server.stop();
    const left = await anyClusterProcesses(server.clusterId);
    killCluster(server.clusterId);
    server.cleanup();
    await postgres.close();
    assert.deepEqual(left, [], "stopping the server releases its agents");
    assert.deepEqual(postgres.leftoverProcesses(), [], "the fixture's cluster left no process");
  });

  async function assertNothingLeft(): Promise<void> {
    assert.deepEqual(await leftoverProcesses(server), [], "no worker process left");
    assert.deepEqual(await jsonCli<WorkerJson[]>(server, ["workers"]), [], "no worker live");
  }

  it("runs jobs, follows their logs and cancels one", async () => {
    const hello = await runCli(server, ["run", "--", "echo", "hello from postgres"]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(hello.stdout, "hello from postgres\n");

    const ids = await Promise.all(Array.from({ length: 4 }, (_, i) => runCli(server, ["run", "--detach", "--", `echo job-${i}; sleep 0.2; echo done-${i}`])));
    for (const [i, r] of ids.entries()) {
      const id = r.stdout.trim();
      const follower = spawnCli(server, ["logs", "--follow", id]);
      let out = "";
      follower.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((r) => follower.once("exit", r));
      assert.equal(code, 0);
      assert.equal(out, `job-${i}\ndone-${i}\n`);
      assert.equal((await waitDestroyed(server, id)).state, "succeeded");
    }

    const marker = `hodei-pg-cancel-${Date.now()}`;
    const id = (await runCli(server, ["run", "--detach", "--", `echo ${marker}; sleep 300`])).stdout.trim();
    await jobWhen(server, id, (j) => j.state === "running", 20_000);
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes(marker));
    const canceled = await runCli(server, ["cancel", id]);
    assert.equal(canceled.code, 0, canceled.stderr);
    const job = await waitDestroyed(server, id);
    assert.equal(job.state, "canceled");
    const jobs = await jsonCli<JobJson[]>(server, ["jobs", "ls"]);
    assert.equal(jobs.length, 6);
    await assertNothingLeft();
  });

  it("answers /readyz 503 while the database refuses connections and 200 once it is back", async () => {
    const name = new URL(url).pathname.slice(1);
    // A refused or reset connection (a kept-alive socket the server closed meanwhile) reads as 0: polled
    // again, and the last such error is kept for the failure message.
    let lastError = "";
    const ready = async () =>
      fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(10_000) }).then(
        (r) => r.status,
        (err: Error) => {
          lastError = `${err.message}${err.cause ? ` (${(err.cause as Error).message ?? String(err.cause)})` : ""}`;
          return 0;
        },
      );
    const diagnosis = () =>
      `last error: ${lastError || "none"}; server exit code: ${server.process.exitCode}; its last output:\n${server.output.slice(-15).join("\n")}`;
    assert.equal(await ready(), 200);
    try {
      await postgres.query(`alter database "${name}" allow_connections false`);
      await postgres.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [name]);
      // Generous bounds: on a loaded machine (CI) the server's passes and probes queue up.
      let seen = 0;
      const startedMs = Date.now();
      assert.equal(await eventually(async () => ((seen = await ready()) === 503 ? 503 : null), 30_000), 503, `last /readyz status: ${seen}; ${diagnosis()}`);
      console.log(`# /readyz answered 503 ${Date.now() - startedMs} ms after the database stopped accepting connections`);
      const body = await (await fetch(`${server.url}/readyz`)).text();
      assert.equal(body, "database unavailable (the server's log says why)\n", "no host, address or user in the open probe's answer");
      // Logged before the probe answers, but read from the server's stdout, which may reach this process after the HTTP answer.
      const isLogged = () => server.output.some((line) => line.includes("the database does not answer; /readyz is unready") && line.includes('"reason"'));
      assert.ok(await eventually(isLogged, 10_000), "the reason is in the log");
    } finally {
      await postgres.query(`alter database "${name}" allow_connections true`);
    }
    assert.equal(await eventually(async () => ((await ready()) === 200 ? 200 : null), 30_000), 200, diagnosis());
    // And it works again: the pool and the listener reconnected.
    const after = await runCli(server, ["run", "--", "echo", "back"]);
    assert.equal(after.code, 0, after.stderr);
    assert.equal(after.stdout, "back\n");
    await assertNothingLeft();
  });

  it("starts three servers at once on a fresh database: all serve, each migration ran once", async () => {
    const fresh = await postgres.createDatabase("hodei_e2e_three");
    const servers = await Promise.all([0, 1, 2].map(() => startServerProcess({ HODEI_DATABASE_URL: fresh, HODEI_PROVIDERS: "local", HODEI_LOCAL_WARM_WORKERS: "0" })));
    try {
      for (const s of servers) assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
      const client = new pg.Client({ connectionString: fresh });
      await client.connect();
      const steps = await client.query<{ name: string; n: string }>("select name, count(*) as n from kysely_migration group by name");
      await client.end();
      assert.ok(steps.rows.length >= 21);
      assert.ok(steps.rows.every((r) => r.n === "1"));
    } finally {
      for (const s of servers) {
        await stopLeavingNothing(s, "a stopped server leaves no process");
      }
    }
  });
});
