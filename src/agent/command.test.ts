/**
 * The job's shell a warm agent prepares (prepareShell): a job started in it sees what a spawn of its
 * own would give it; it is let go when it cannot serve; it exits with its agent; and without a
 * shell it neither throws nor ends the agent. And a job's command that the system refuses to start.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isAlive } from "../providers/process-table.js";
import { type PreparedShell, prepareShell, startCommand } from "./command.js";

const COMMAND = new URL("./command.ts", import.meta.url).href;
const CONFIG = new URL("./config.ts", import.meta.url).href;

/** Runs prepareShell in a child node with PATH as given (and more environment, if given), then `then` (JS); prints what it returns. */
function runPrepared(path: string, env: Record<string, string> = {}, then = "return {};") {
  const script = `
    const { prepareShell, startCommand } = await import(${JSON.stringify(COMMAND)});
    const { readAgentConfig } = await import(${JSON.stringify(CONFIG)});
    const fs = await import("node:fs");
    // As the agent's main does: the environment a job would get.
    const baseEnv = readAgentConfig(process.env).baseEnv;
    const prepared = prepareShell(baseEnv);
    const out = await (async () => { ${then} })();
    process.stdout.write(JSON.stringify({ pid: prepared?.child.pid ?? null, ...out }));
    process.exit(0);`;
  return spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    env: { HODEI_SERVER_URL: "http://127.0.0.1:9", ...env, PATH: path, HOME: process.env.HOME },
    encoding: "utf8",
    // The child's node and tsx are found by absolute path: PATH is the case under test.
    cwd: process.cwd(),
  });
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  return !isAlive(pid);
}

/** What a job sees of its process: environment, directory, stdin, and whether it leads its group and session. */
const PROBE = 'env | LC_ALL=C sort; echo "cwd=$(pwd)"; echo "stdin=$(readlink /proc/self/fd/0)"; set -- $(cut -d")" -f2 /proc/$$/stat); echo "leader=$([ "$3" = $$ ] && [ "$4" = $$ ] && echo yes)"';

async function runJob(spec: Parameters<typeof startCommand>[0], prepared?: PreparedShell) {
  const output = { stdout: "", stderr: "" };
  const running = startCommand(spec, (stream, data) => (output[stream as "stdout" | "stderr"] += data.toString()), prepared);
  const outcome = await running.done;
  return { outcome, output: output.stdout, stderr: output.stderr, pid: running.pid };
}

describe("the prepared shell", () => {
  const linux = { skip: process.platform !== "linux" && "reads /proc" };

  it("runs the job as a spawn of its own would: the same environment (quotes, newlines, overrides), directory, stdin, group and session", linux, async () => {
    const workDir = mkdtempSync(join(tmpdir(), "hodei-prepared-"));
    try {
      const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/home/x", KEPT: "same", LANG: "C.UTF-8", PWD: "/somewhere/else" };
      const env = { ...baseEnv, HOME: "/home/job", QUOTED: "it's \"quoted\" $HOME `id` \\", LINES: "one\ntwo\n", EMPTY: "", SECRET: "s3cr'et" };
      const expect = await runJob({ command: ["sh", "-c", PROBE], script: "", env, workDir, timeoutSeconds: 10 });
      const prepared = prepareShell(baseEnv)!;
      const got = await runJob({ command: ["sh", "-c", PROBE], script: "", env, workDir, timeoutSeconds: 10 }, prepared);
      assert.equal(got.pid, prepared.child.pid, "the job ran in the prepared shell");
      assert.deepEqual(got.outcome.exitCode, 0);
      assert.deepEqual([got.output, got.stderr], [expect.output, expect.stderr]);
      assert.match(got.output, /^QUOTED=it's "quoted" \$HOME `id` \\$/m);
      assert.match(got.output, /^LINES=one$/m);
      assert.match(got.output, new RegExp(`^cwd=${workDir}$`, "m"));
      assert.match(got.output, /^stdin=\/dev\/null$/m);
      assert.match(got.output, /^leader=yes$/m);
      assert.doesNotMatch(got.output, /^OLDPWD=/m);
      // A script job, and a single-element command, alike.
      for (const spec of [{ command: [], script: PROBE }, { command: [PROBE], script: "" }]) {
        const fresh = await runJob({ ...spec, env, workDir, timeoutSeconds: 10 });
        const inShell = await runJob({ ...spec, env, workDir, timeoutSeconds: 10 }, prepareShell(baseEnv));
        assert.deepEqual([inShell.output, inShell.stderr], [fresh.output, fresh.stderr]);
      }
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("execs an argv-form command itself (one exec fewer than the spawn's sh -c 'exec \"$@\"'), and fails one as the spawn does", linux, async () => {
    const workDir = mkdtempSync(join(tmpdir(), "hodei-prepared-"));
    try {
      const notExecutable = join(workDir, "data.txt");
      writeFileSync(notExecutable, "x\n");
      const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C" };
      // The sh that the job's PATH finds says when it runs: a spawn runs it to exec the command, the prepared shell does not.
      const bin = join(workDir, "bin");
      mkdirSync(bin);
      writeFileSync(join(bin, "sh"), '#!/bin/sh\necho "sh ran" >&2\nexec /bin/sh "$@"\n', { mode: 0o755 });
      const counting = { ...env, PATH: `${bin}:${env.PATH}` };
      const spawned = await runJob({ command: ["echo", "hi"], script: "", env: counting, workDir, timeoutSeconds: 10 });
      assert.deepEqual([spawned.output, spawned.stderr], ["hi\n", "sh ran\n"]);
      const prepared = prepareShell(env)!;
      const direct = await runJob({ command: ["echo", "hi"], script: "", env: counting, workDir, timeoutSeconds: 10 }, prepared);
      assert.equal(direct.pid, prepared.child.pid);
      assert.deepEqual([direct.output, direct.stderr], ["hi\n", ""], "no sh between the prepared shell and the command");
      const cases: Array<{ why: string; command: string[]; env?: Record<string, string> }> = [
        { why: "a command found on PATH, arguments kept as given", command: ["printf", "%s|", "a b", "", "it's", "$HOME", "-x", "*"] },
        { why: "a missing command", command: ["no-such-command-hodei", "x"] },
        { why: "a file that is not executable", command: [notExecutable] },
        { why: "a name that is only a builtin", command: ["cd", "/"] },
        { why: "a name like an option", command: ["-x", "y"] },
        { why: "an exit status", command: ["sh", "-c", "exit 7"] },
        // The spawn's sh is not found (ENOENT): the job is spawned, and the shell let go.
        { why: "a PATH without sh", command: ["ls", "/"], env: { PATH: workDir } },
        { why: "a PATH with sh only in a relative directory", command: ["ls", "/"], env: { PATH: "bin" } },
      ];
      for (const c of cases) {
        const jobEnv = { ...env, ...c.env };
        const fresh = await runJob({ command: c.command, script: "", env: jobEnv, workDir, timeoutSeconds: 10 });
        const shell = prepareShell(env)!;
        const got = await runJob({ command: c.command, script: "", env: jobEnv, workDir, timeoutSeconds: 10 }, shell);
        if (c.env?.PATH) assert.ok(got.pid !== shell.child.pid && (await gone(shell.child.pid!)), `${c.why}: spawned, the shell let go`);
        else assert.equal(got.pid, shell.child.pid, `${c.why}: ran in the prepared shell`);
        assert.deepEqual(
          { exitCode: got.outcome.exitCode, error: got.outcome.error, stdout: got.output, stderr: got.stderr },
          { exitCode: fresh.outcome.exitCode, error: fresh.outcome.error, stdout: fresh.output, stderr: fresh.stderr },
          c.why,
        );
      }
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("is let go, and the job spawned as before, when it died, the directory is missing or an argument is over Linux's limit", linux, async () => {
    const workDir = mkdtempSync(join(tmpdir(), "hodei-prepared-"));
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
    try {
      const dead = prepareShell(env)!;
      process.kill(dead.child.pid!, "SIGKILL");
      await new Promise((r) => dead.child.once("exit", r));
      const ran = await runJob({ command: ["echo", "fresh"], script: "", env, workDir, timeoutSeconds: 10 }, dead);
      assert.notEqual(ran.pid, dead.child.pid);
      assert.deepEqual([ran.outcome.exitCode, ran.output], [0, "fresh\n"]);

      const cases = [
        { command: ["true"], workDir: join(workDir, "missing") },
        { command: ["true"], workDir: "relative/missing" },
        { command: [`: ${"x".repeat(200 * 1024)}`], workDir },
      ];
      for (const c of cases) {
        const fresh = await runJob({ command: c.command, script: "", env, workDir: c.workDir, timeoutSeconds: 10 });
        const prepared = prepareShell(env)!;
        const got = await runJob({ command: c.command, script: "", env, workDir: c.workDir, timeoutSeconds: 10 }, prepared);
        assert.equal(got.outcome.error, fresh.outcome.error);
        assert.match(got.outcome.error, /^could not start the command: /);
        assert.ok(await gone(prepared.child.pid!), "the unused shell exits");
      }
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("gets a job's environment, not the agent's markers (else it shows as one more agent in the local provider's scans)", linux, () => {
    // A `sh` of our own, found first on PATH, writes the environment it got.
    const dir = mkdtempSync(join(tmpdir(), "hodei-warm-sh-"));
    try {
      const seen = join(dir, "environment");
      writeFileSync(join(dir, "sh"), `#!/bin/sh\nenv > ${seen}\n`, { mode: 0o755 });
      const run = runPrepared(`${dir}:${process.env.PATH ?? "/usr/bin:/bin"}`, { HODEI_CLUSTER_ID: "c1", HODEI_WARM_ID: "w1", HODEI_MANAGED_BY: "hodei" }, "await new Promise((r) => prepared.child.once('exit', r)); return {};");
      assert.equal(run.status, 0, run.stderr);
      const environment = readFileSync(seen, "utf8");
      assert.match(environment, /^PATH=/m);
      assert.doesNotMatch(environment, /HODEI_/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("exits when its agent exits without a job (the pipe closes)", linux, async () => {
    const run = runPrepared(process.env.PATH ?? "/usr/bin:/bin");
    assert.equal(run.status, 0, run.stderr);
    const { pid } = JSON.parse(run.stdout) as { pid: number };
    assert.ok(pid > 0);
    assert.ok(await gone(pid), `shell ${pid} still runs after its agent exited`);
  });

  it("without a shell to start, neither throws nor ends the agent, and the job fails with the reason", linux, () => {
    const run = runPrepared("/nonexistent", {}, "const r = startCommand({ command: ['true'], script: '', env: baseEnv, workDir: '/tmp', timeoutSeconds: 5 }, () => {}, prepared); return { error: (await r.done).error };");
    assert.equal(run.status, 0, run.stderr);
    assert.match((JSON.parse(run.stdout) as { error: string }).error, /^could not start the command: spawn sh ENOENT/);
  });
});

describe("startCommand", () => {
  it("fails a command the system refuses to exec (an argument over MAX_ARG_STRLEN: E2BIG) with the reason, without throwing", async () => {
    const workDir = mkdtempSync(join(tmpdir(), "hodei-command-"));
    try {
      const output: string[] = [];
      const running = startCommand({ command: [`: ${"x".repeat(200 * 1024)}`], script: "", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, workDir, timeoutSeconds: 10 }, (_s, d) => output.push(d.toString()));
      assert.equal(running.pid, undefined);
      const outcome = await running.done;
      assert.equal(outcome.exitCode, -1);
      assert.match(outcome.error, /^could not start the command: .*E2BIG/);
      assert.deepEqual(output, []);
      // The same call with an argument Linux accepts runs.
      const ok = await startCommand({ command: [`: ${"x".repeat(1024)}`], script: "", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, workDir, timeoutSeconds: 10 }, () => {}).done;
      assert.deepEqual([ok.exitCode, ok.error], [0, ""]);
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});
