/**
 * Exit-code retries and reruns through the CLI on the local provider: a real server process, real
 * agents. A flaky command fails with exit 3 until a marker file exists (it creates it on the way),
 * so its first attempt fails and its second succeeds. Every test ends by proving that no worker
 * process of its cluster is left.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import {
  bearer,
  type JobJson,
  jobWhen,
  jsonCli,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  startServerProcess,
  stopLeavingNothing,
  type WorkerJson,
} from "./harness.js";

/** A job as `jobs get --json` prints it, with what this file reads besides the harness's fields. */
interface RetriedJobJson extends JobJson {
  retryOnExitCodes?: string;
  rerunOf?: string;
  command: string[];
  attemptHistory: { number: number; exitCode?: number; reason?: string; failureReason?: string; workerId: string }[];
}

/** Fails with `code` while `marker` does not exist, creating it: the first run fails, the next succeeds. */
function flaky(marker: string, code = 3): string {
  return `if [ -e '${marker}' ]; then echo second run; else touch '${marker}'; echo first run; exit ${code}; fi`;
}

describe("exit-code retries and reruns on the local provider", () => {
  let server: ServerProcess;
  let dir: string;
  let markers = 0;
  const marker = () => join(dir, `marker-${++markers}`);

  before(async () => {
    server = await startServerProcess();
    dir = mkdtempSync(join(tmpdir(), "hodei-retry-"));
  });
  afterEach(async () => {
    const left = await leftoverProcesses(server);
    assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
    const workers = await jsonCli<WorkerJson[]>(server, ["workers"]);
    assert.deepEqual(workers, [], "no worker should be live");
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await stopLeavingNothing(server);
  });

  async function lastJob(): Promise<RetriedJobJson> {
    const [job] = await jsonCli<RetriedJobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
    return jsonCli<RetriedJobJson>(server, ["jobs", "get", job.id]);
  }

  it("retries a flaky command that exits 3 under --retry-on-exit 3: the job succeeds in 2 attempts, and attempt 1 shows exit code 3", async () => {
    const run = await runCli(server, ["run", "--max-attempts", "3", "--retry-on-exit", "3", "--", flaky(marker())]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "first run\nsecond run\n", "the output of both attempts, in order");
    assert.match(run.stderr, /\[hodei\] the command exited with code 3, an exit code this job retries: it runs again on a new worker \(attempt 2\)/);
    const job = await lastJob();
    assert.deepEqual([job.state, job.exitCode, job.attempts, job.maxAttempts, job.retryOnExitCodes], ["succeeded", 0, 2, 3, "3"]);
    assert.equal(job.uncountedAttempts ?? 0, 0);
    const [first, second] = job.attemptHistory;
    assert.deepEqual([first.number, first.exitCode, first.reason], [1, 3, "the command exited with code 3"]);
    assert.deepEqual([second.number, second.exitCode, second.reason], [2, 0, "the command exited with code 0"]);
    assert.notEqual(first.workerId, second.workerId, "each attempt on a new worker");

    const human = await runCli(server, ["jobs", "get", job.id]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /retry on exit\s+3\n/);
    assert.match(human.stdout, /#1\n(?:.*\n)*?\s+exit code\s+3\n\s+ended\s+the command exited with code 3\n/);
    assert.match(human.stdout, /#2\n(?:.*\n)*?\s+exit code\s+0\n/);
  });

  it("retries any non-zero exit under --retry-on-exit any", async () => {
    const run = await runCli(server, ["run", "--max-attempts", "2", "--retry-on-exit", "any", "--", flaky(marker(), 42)]);
    assert.equal(run.code, 0, run.stderr);
    const job = await lastJob();
    assert.deepEqual([job.state, job.attempts, job.retryOnExitCodes], ["succeeded", 2, "any"]);
    assert.deepEqual(job.attemptHistory.map((a) => a.exitCode), [42, 0]);
  });

  it("does not retry an exit code that is not in the list: the job fails at once with it", async () => {
    const run = await runCli(server, ["run", "--max-attempts", "3", "--retry-on-exit", "3,4", "--", flaky(marker(), 5)]);
    assert.equal(run.code, 5, run.stderr);
    const job = await lastJob();
    assert.deepEqual([job.state, job.exitCode, job.attempts, job.reason], ["failed", 5, 1, "the command exited with code 5"]);
    assert.deepEqual(job.attemptHistory.map((a) => a.exitCode), [5]);
  });

  it("fails with the last exit code once maxAttempts are spent", async () => {
    // Exits 7 on the first attempt, 9 on every later one.
    const m = marker();
    const command = `if [ -e '${m}' ]; then exit 9; else touch '${m}'; exit 7; fi`;
    const run = await runCli(server, ["run", "--max-attempts", "2", "--retry-on-exit", "7,9", "--", command]);
    assert.equal(run.code, 9, run.stderr);
    const job = await lastJob();
    assert.deepEqual([job.state, job.exitCode, job.attempts, job.reason], ["failed", 9, 2, "the command exited with code 9"]);
    assert.deepEqual(job.attemptHistory.map((a) => [a.exitCode, a.reason]), [
      [7, "the command exited with code 7"],
      [9, "the command exited with code 9"],
    ]);
  });

  it("refuses codes to retry with one attempt, or a code outside 1..255, naming the field", async () => {
    const alone = await runCli(server, ["run", "--retry-on-exit", "3", "--", "true"]);
    assert.equal(alone.code, 1);
    assert.match(alone.stderr, /retryOnExitCodes: retrying needs maxAttempts of 2 or more \(it is 1\)/);
    const zero = await runCli(server, ["run", "--max-attempts", "2", "--retry-on-exit", "0", "--", "true"]);
    assert.equal(zero.code, 1);
    assert.match(zero.stderr, /retryOnExitCodes: "0" is not an exit code from 1 to 255/);
    assert.deepEqual(await jsonCli<RetriedJobJson[]>(server, ["jobs", "ls", "--state", "queued"]), [], "nothing was submitted");
  });

  it("takes retryOnExitCodes as a string in Connect JSON", async () => {
    const res = await fetch(`${server.url}/hodei.v1.JobService/SubmitJob`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(server) },
      body: JSON.stringify({ command: [flaky(marker(), 4)], maxAttempts: 2, retryOnExitCodes: "4, 3" }),
    });
    assert.equal(res.status, 200);
    const { job } = (await res.json()) as { job: RetriedJobJson };
    assert.equal(job.retryOnExitCodes, "3,4");
    const done = await jobWhen(server, job.id, (j) => j.state === "succeeded" || j.state === "failed");
    assert.deepEqual([done.state, done.attempts], ["succeeded", 2]);
  });

  describe("hodei rerun", () => {
    it("runs a finished job again as a new job that names the original, with the same command and env", async () => {
      const run = await runCli(server, ["run", "--json", "-e", "GREETING=again", "--", "echo $GREETING"]);
      assert.equal(run.code, 0, run.stderr);
      const original = JSON.parse(run.stdout) as RetriedJobJson;
      const rerun = await runCli(server, ["rerun", original.id]);
      assert.equal(rerun.code, 0, rerun.stderr);
      const id = rerun.stdout.trim();
      assert.match(id, /^[0-9a-f-]{8,}$/, "prints only the new job's id");
      assert.notEqual(id, original.id);
      const done = (await jobWhen(server, id, (j) => j.state === "succeeded")) as RetriedJobJson;
      assert.equal(done.state, "succeeded");
      assert.equal(done.rerunOf, original.id);
      assert.deepEqual(done.command, original.command);
      assert.deepEqual(done.env, { GREETING: "again" });
      const logs = await runCli(server, ["logs", id]);
      assert.equal(logs.stdout, "again\n");
      const human = await runCli(server, ["jobs", "get", id]);
      assert.match(human.stdout, new RegExp(`rerun of\\s+${original.id}\\n`));
      const asJson = await runCli(server, ["rerun", original.id, "--json"]);
      assert.equal(asJson.code, 0, asJson.stderr);
      const second = JSON.parse(asJson.stdout) as RetriedJobJson;
      assert.equal(second.rerunOf, original.id);
      assert.notEqual(second.id, id);
      await jobWhen(server, second.id, (j) => j.state === "succeeded");
    });

    it("keeps the retry settings: a rerun of a flaky job retries its exit code too", async () => {
      const m = marker();
      const run = await runCli(server, ["run", "--json", "--max-attempts", "2", "--retry-on-exit", "3", "--", flaky(m)]);
      assert.equal(run.code, 0, run.stderr);
      const original = JSON.parse(run.stdout) as RetriedJobJson;
      rmSync(m); // flaky again
      const rerun = await jsonCli<RetriedJobJson>(server, ["rerun", original.id]);
      const done = await jobWhen(server, rerun.id, (j) => j.state === "succeeded" || j.state === "failed");
      assert.deepEqual([done.state, done.attempts, done.maxAttempts], ["succeeded", 2, 2]);
      assert.equal(rerun.retryOnExitCodes, "3");
    });

    it("refuses a job that has not finished, naming its state, and an unknown job", async () => {
      const detach = await runCli(server, ["run", "--detach", "--", "sleep 30"]);
      assert.equal(detach.code, 0, detach.stderr);
      const id = detach.stdout.trim();
      await jobWhen(server, id, (j) => j.state === "running");
      const refused = await runCli(server, ["rerun", id]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, new RegExp(`job ${id} is running; only a finished job can be rerun \\(wait for it to end, or cancel it first\\)`));
      assert.equal((await runCli(server, ["cancel", id])).code, 0);
      const unknown = await runCli(server, ["rerun", "no-such-job"]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /job no-such-job not found/);
      await jobWhen(server, id, (j) => Boolean(j.timeline.destroyed));
    });

    it("lets a submit key rerun its own jobs only", async () => {
      const key = async (name: string) =>
        (await jsonCli<{ key: string }>(server, ["keys", "create", "--name", name, "--scope", "submit,provider:local"])).key;
      const mine = { env: { HODEI_TOKEN: await key("rerun-mine") } };
      const theirs = { env: { HODEI_TOKEN: await key("rerun-theirs") } };
      const run = await runCli(server, ["run", "--detach", "--", "true"], mine);
      assert.equal(run.code, 0, run.stderr);
      const id = run.stdout.trim();
      await jobWhen(server, id, (j) => j.state === "succeeded");
      const refused = await runCli(server, ["rerun", id], theirs);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /lacks the scope "read" to read job/);
      const own = await runCli(server, ["rerun", id], mine);
      assert.equal(own.code, 0, own.stderr);
      const rerun = await jobWhen(server, own.stdout.trim(), (j) => j.state === "succeeded");
      assert.equal(rerun.submittedBy, "rerun-mine");
    });
  });
});
