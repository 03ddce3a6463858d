/**
 * Job secrets end to end on the local provider: a real server, real agents, the real CLI. A secret
 * reaches the command as an environment variable and nowhere else: not the database files (the
 * SQLite file and its WAL, while the job runs and after), the API's answers, the server's log,
 * /metrics, any file of the data directory, the agent's environment or any process's argv. Its
 * value, base64 and URL-encoded forms are *** in the log, also split across writes and across the
 * 64 KiB chunk size. Its row is deleted when the job ends, however it ends. Every test proves no
 * worker process is left.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import SqliteDatabase from "better-sqlite3";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import { findMarkedProcesses } from "../../src/providers/process-table.js";
import {
  eventually,
  type JobJson,
  jobWhen,
  jsonCli,
  leftoverProcesses,
  runCli,
  sendKey,
  type ServerProcess,
  startServerProcess,
  stopLeavingNothing,
  waitDestroyed,
  type WorkerJson,
} from "./harness.js";
import { tempDir } from "../fixtures/temp-dir.js";

const SECRET = "hunter2";
/** Every form of the value that must never be shown (in output; the tests' commands may name it). */
const NEEDLES = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(SECRET).toString("base64").replace(/=+$/, "")];

interface SecretJobJson extends JobJson {
  secretNames?: string[];
}

/** The needles found in `text` (none, if all is well). */
function leaksOf(text: string | Buffer, needles: string[]): string[] {
  const data = typeof text === "string" ? Buffer.from(text) : text;
  return needles.filter((needle) => data.includes(needle));
}

const leaks = (text: string | Buffer) => leaksOf(text, NEEDLES);

/** Every file under `dir` (the data directory: database, WAL, work directories, agent logs, keys) that holds a needle. */
function filesHoldingAny(dir: string, needles: string[]): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) continue;
    if (stat.isDirectory()) found.push(...filesHoldingAny(path, needles));
    else if (stat.isFile() && leaksOf(readFileSync(path), needles).length > 0) found.push(path);
  }
  return found;
}

/** Rows of job_secrets of a job, read from the server's database file as another process would. */
function secretRows(dataDir: string, jobId: string): number {
  const db = new SqliteDatabase(join(dataDir, "hodei.db"), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("select count(*) as n from job_secrets where job_id = ?").get(jobId) as { n: number }).n;
  } finally {
    db.close();
  }
}

function readProc(pid: number, file: "environ" | "cmdline"): Buffer {
  try {
    return readFileSync(`/proc/${pid}/${file}`);
  } catch {
    return Buffer.alloc(0); // it ended meanwhile
  }
}

describe("job secrets on the local provider", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess();
  });
  afterEach(async () => {
    assert.deepEqual(await leftoverProcesses(server), [], "no worker process is left");
  });
  after(async () => {
    await stopLeavingNothing(server);
    assert.deepEqual(leaks(server.output.join("\n")), [], "the server never logged a secret");
  });

  async function lastJob(): Promise<SecretJobJson> {
    const [job] = await jsonCli<SecretJobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
    return job;
  }

  it("gives the secret to the command as an environment variable, and `echo $SECRET` prints *** in its log", async () => {
    const run = await runCli(server, ["run", "--secret", `SECRET=${SECRET}`, "--", 'echo $SECRET; [ "$SECRET" = hunter2 ] && echo matched']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "***\nmatched\n", "the value arrived (matched) and is redacted");
    const job = await lastJob();
    const logs = await runCli(server, ["logs", job.id]);
    assert.equal(logs.stdout, "***\nmatched\n");
    assert.deepEqual(job.secretNames, ["SECRET"]);
    await waitDestroyed(server, job.id);
  });

  it("redacts the value's base64 (also inside a longer base64 stream) and its URL encoding", async () => {
    const value = "p@ss w/rd+hunter2";
    const script = [
      'printf %s "$S" | base64',
      'printf %s "$S" | base64 | tr -d =',
      'printf x%s "$S" | base64',
      'printf xy%s "$S" | base64',
      'printf %s "$S" | sed "s/%/%25/g; s/@/%40/g; s/ /%20/g; s|/|%2F|g; s/+/%2B/g"',
    ].join("\n");
    const run = await runCli(server, ["run", "--secret", `S=${value}`, "--", script]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 5, run.stdout);
    for (const line of lines) assert.match(line, /^.{0,4}\*\*\*.{0,4}$/, `a line still shows much of the secret: ${line}`);
    const encoded = Buffer.from(value).toString("base64");
    assert.deepEqual(leaksOf(run.stdout, [value, encoded, encoded.replace(/=+$/, ""), encodeURIComponent(value), encoded.slice(4, -4)]), []);
  });

  it("redacts a value split across two writes, and one that straddles the 64 KiB chunk size", async () => {
    const script = [
      "head -c 65534 /dev/zero | tr '\\0' a", // the value then starts 2 bytes before the first chunk's end
      'printf "%s\\n" "$SECRET"',
      'printf %s "${SECRET%????}"', // "hun", sent on its own (the agent flushes output after 25 ms)
      "sleep 0.5",
      'printf "%s\\n" "${SECRET#???}"', // "ter2"
    ].join("\n");
    const run = await runCli(server, ["run", "--secret", `SECRET=${SECRET}`, "--", script]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `${"a".repeat(65534)}***\n***\n`);
    const job = await lastJob();
    const api = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
    const entries = [];
    for await (const entry of api.getLogs({ jobId: job.id })) entries.push(entry);
    assert.ok(entries.filter((e) => e.stream === "stdout").length >= 2, "the output crossed a chunk boundary");
    for (const entry of entries) {
      const data = Buffer.from(entry.data);
      for (let at = 0; at + 3 <= SECRET.length; at++) assert.ok(!data.includes(SECRET.slice(at, at + 3)), `entry ${entry.seq} holds "${SECRET.slice(at, at + 3)}"`);
    }
  });

  it("keeps the value out of the database files, the API, the data directory, /metrics, the agent's environment and every argv, while the job runs and after", async () => {
    // A value of its own: the other tests' commands may name theirs (the command is no secret).
    const HIDDEN = "zebra-7f3c91-quartz";
    const NEEDLES = [HIDDEN, Buffer.from(HIDDEN).toString("base64"), Buffer.from(HIDDEN).toString("base64").replace(/=+$/, "")];
    const leaks = (text: string | Buffer) => leaksOf(text, NEEDLES);
    const filesHolding = (dir: string) => filesHoldingAny(dir, NEEDLES);
    // The job waits for a file in its work directory, so the test looks while it runs.
    const submitted = await runCli(server, ["run", "--detach", "--secret", `SECRET=${HIDDEN}`, "--", "echo started; while [ ! -f go ]; do sleep 0.05; done; echo $SECRET"]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const jobId = submitted.stdout.trim();
    const running = await jobWhen(server, jobId, (job) => job.state === "running");
    assert.equal(running.state, "running");
    const worker = (await jsonCli<WorkerJson[]>(server, ["workers"])).find((w) => w.jobId === jobId);
    assert.ok(worker, "the job's worker is live");
    const ofWorker = () => findMarkedProcesses(server.clusterId).filter((p) => p.workerId === worker.id);
    await eventually(() => ofWorker().length > 0);
    const jobProcesses = ofWorker();
    assert.ok(jobProcesses.length > 0, "the job's processes are found");

    // While it runs.
    assert.equal(secretRows(server.dataDir, jobId), 1, "the secret is stored (sealed) while the job may run");
    for (const file of ["hodei.db", "hodei.db-wal"]) {
      assert.ok(existsSync(join(server.dataDir, file)), `${file} exists`);
      assert.deepEqual(leaks(readFileSync(join(server.dataDir, file))), [], `${file} while the job runs`);
    }
    assert.deepEqual(filesHolding(server.dataDir), [], "no file of the data directory holds the value while the job runs");
    const agentPid = jobProcesses[0].workerPid;
    const agentEnv = readProc(agentPid, "environ");
    assert.ok(agentEnv.includes("HODEI_MANAGED_BY=hodei"), "the agent's environment was read");
    assert.deepEqual(leaks(agentEnv), [], "the agent's own environment");
    const jobEnvs = jobProcesses.map((p) => readProc(p.pid, "environ"));
    assert.ok(jobEnvs.some((env) => env.toString("latin1").split("\0").includes(`SECRET=${HIDDEN}`)), "the job's process has it, as an environment variable");
    for (const p of findMarkedProcesses(server.clusterId)) {
      assert.deepEqual(leaks(readProc(p.pid, "cmdline")), [], `argv of ${p.workerId ? "job process" : "agent"} ${p.pid}`);
      if (p.workerId === "") assert.deepEqual(leaks(readProc(p.pid, "environ")), [], `environment of agent ${p.pid}`);
    }
    const serverPid = server.process.pid!;
    assert.deepEqual(leaks(readProc(serverPid, "cmdline")), [], "the server's argv");
    const get = await runCli(server, ["jobs", "get", jobId, "--json"]);
    const ls = await runCli(server, ["jobs", "ls", "--json"]);
    assert.deepEqual([...leaks(get.stdout), ...leaks(ls.stdout)], [], "jobs get/ls --json");
    assert.deepEqual((JSON.parse(get.stdout) as SecretJobJson).secretNames, ["SECRET"]);
    const human = await runCli(server, ["jobs", "get", jobId]);
    assert.match(human.stdout, /secrets\s+SECRET \(values never shown\)/);

    // Let it finish.
    writeFileSync(join(server.dataDir, "work", worker.id, "go"), "");
    const done = await waitDestroyed(server, jobId);
    assert.equal(done.state, "succeeded");
    const logs = await runCli(server, ["logs", jobId]);
    assert.equal(logs.stdout, "started\n***\n");
    assert.equal(secretRows(server.dataDir, jobId), 0, "the row is deleted once the job ended");
    for (const file of ["hodei.db", "hodei.db-wal"]) assert.deepEqual(leaks(readFileSync(join(server.dataDir, file))), [], `${file} after the job`);
    assert.deepEqual(filesHolding(server.dataDir), [], "no file of the data directory holds the value after the job");
    const metrics = await fetch(`${server.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /hodei_/);
    assert.deepEqual(leaks(metrics), [], "/metrics");
    const logsJson = await runCli(server, ["logs", jobId, "--json"]);
    assert.deepEqual(leaks(logsJson.stdout), [], "GetLogs as JSON");
    assert.deepEqual(leaks(server.output.join("\n")), [], "the server's log");
  });

  it("deletes the secret when the job fails, is canceled or times out, and reads --secret-file", async () => {
    const file = join(tempDir("hodei-secret-"), "token");
    writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });

    const failed = await runCli(server, ["run", "--secret-file", `SECRET=${file}`, "--", '[ "$SECRET" = hunter2 ] && echo matched; exit 3']);
    assert.equal(failed.code, 3, failed.stderr);
    assert.equal(failed.stdout, "matched\n", "the file's content, without its trailing newline");
    const failedJob = await lastJob();
    assert.equal(failedJob.state, "failed");
    assert.equal(secretRows(server.dataDir, failedJob.id), 0, "failed");

    const timedOut = await runCli(server, ["run", "--timeout", "1", "--secret", `SECRET=${SECRET}`, "--", "sleep 30"]);
    assert.notEqual(timedOut.code, 0);
    const timedOutJob = await lastJob();
    assert.equal(timedOutJob.state, "timed_out");
    assert.equal(secretRows(server.dataDir, timedOutJob.id), 0, "timed out");

    const detached = await runCli(server, ["run", "--detach", "--secret", `SECRET=${SECRET}`, "--", "sleep 30"]);
    const canceledId = detached.stdout.trim();
    await jobWhen(server, canceledId, (job) => job.state === "running");
    assert.equal(secretRows(server.dataDir, canceledId), 1);
    const cancel = await runCli(server, ["cancel", canceledId]);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(secretRows(server.dataDir, canceledId), 0, "canceled: deleted in the cancel's transaction");
    assert.equal((await waitDestroyed(server, canceledId)).state, "canceled");
    for (const id of [failedJob.id, timedOutJob.id, canceledId]) await waitDestroyed(server, id);
  });

  it("refuses a secret that is also an env variable, naming it, before anything runs", async () => {
    const run = await runCli(server, ["run", "-e", "SECRET=plain", "--secret", `SECRET=${SECRET}`, "--", "true"]);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /secrets: "SECRET" is also in env/);
    assert.deepEqual(leaks(run.stderr), []);
  });
});
