// AgentLauncher on its own: what a start gets when the launcher cannot run or dies, and that every
// process it starts is reported and reaped. Each test proves it left no process behind.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { AgentLauncher, type LaunchedAgent } from "./local-launcher.js";
import { isAlive } from "./process-table.js";

describe("AgentLauncher", () => {
  let dir: string;
  let launchers: AgentLauncher[];
  let lost: LaunchedAgent[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hodei-launcher-test-"));
    launchers = [];
    lost = [];
  });

  afterEach(async () => {
    const pids = launchers.map((l) => l.pid).filter((pid): pid is number => pid !== undefined);
    for (const launcher of launchers) launcher.close();
    for (const pid of pids) await until(() => !isAlive(pid), `launcher ${pid} exited`);
    rmSync(dir, { recursive: true, force: true });
  });

  function newLauncher(nodePath = process.execPath): AgentLauncher {
    const launcher = new AgentLauncher(nodePath, (agents) => lost.push(...agents));
    launchers.push(launcher);
    return launcher;
  }

  function request(args: string[], logName = "agent.log") {
    return { file: "/bin/sh", args: ["-c", ...args], cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, logPath: join(dir, logName) };
  }

  it("starts a process with the request's environment and log file, feeds its stdin once, and reports its exit", async () => {
    const launcher = newLauncher();
    const agent = await launcher.launch({ ...request(['read line; echo "got $line from $HODEI_X"; exit 3']), env: { HODEI_X: "the request" } });
    assert.equal(isAlive(agent.pid), true);
    const reported: unknown[][] = [];
    agent.once("exit", (...args: unknown[]) => reported.push(args));
    agent.input("hello\n");
    // Neither the launcher nor its agents keep this process alive (the server's listener does): poll.
    await until(() => reported.length === 1, "its exit is reported");
    assert.deepEqual(reported, [[3, null]]);
    assert.deepEqual(agent.exit, { code: 3, signal: null });
    assert.equal(readFileSync(join(dir, "agent.log"), "utf8"), "got hello from the request\n");
    assert.equal(isAlive(agent.pid), false, "reaped by the launcher");
  });

  it("refuses a start the system refuses, with its reason, and serves the next one", async () => {
    const launcher = newLauncher();
    await assert.rejects(launcher.launch({ ...request([]), file: join(dir, "no-such-binary") }), (err: Error & { code?: string }) => /ENOENT/.test(err.message) && err.code === "ENOENT");
    await assert.rejects(launcher.launch(request([], "no-such-dir/agent.log")), /ENOENT/, "a log file that cannot be opened");
    const agent = await launcher.launch(request(["exit 0"]));
    await until(() => agent.exit !== undefined, "the next start runs");
  });

  it("a launcher that cannot start fails the start that waits for it, with the reason", async () => {
    const missing = newLauncher(join(dir, "no-such-node"));
    await assert.rejects(missing.launch(request(["exit 0"])), /could not start the launcher .*ENOENT/);
    const failing = newLauncher("/bin/false");
    await assert.rejects(failing.launch(request(["exit 0"])), /the launcher exited \(code 1\)/);
    assert.match(failing.lostReason, /the launcher exited \(code 1\)/);
  });

  it("a launch right after close goes to a new launcher, untouched by the old one's exit", async () => {
    const launcher = newLauncher();
    const first = await launcher.launch(request(["exit 0"]));
    const old = launcher.pid!;
    launcher.close();
    const next = await launcher.launch(request(["exit 0"]));
    assert.notEqual(launcher.pid, old);
    await until(() => !isAlive(old), "the closed launcher exited");
    await until(() => next.exit !== undefined, "the new launcher reports its agent's exit");
    assert.equal(next.isLost, false);
    assert.equal(launcher.lostReason, "", "a closed launcher is not a lost one");
    assert.ok(first.exit !== undefined || first.isLost, "the first agent's exit was reported, or it is known lost");
  });

  it("a killed launcher: its running processes are handed over as lost (no exit will come), its idle ones see stdin close, and a new launcher serves the next start", async () => {
    const launcher = newLauncher();
    const waiting = await launcher.launch(request(["read line; exit 0"])); // exits when its stdin closes
    const running = await launcher.launch(request(["exec sleep 30 0<&-"]));
    const first = launcher.pid!;
    process.kill(first, "SIGKILL");
    await until(() => lost.length === 2, "both reported lost");
    assert.deepEqual(new Set(lost), new Set([waiting, running]));
    assert.equal(waiting.isLost && running.isLost, true);
    await until(() => !isAlive(waiting.pid), "the process waiting on stdin exited");
    assert.equal(isAlive(running.pid), true, "a running process lives on without its launcher");
    running.input("ignored\n"); // through the dead launcher: dropped, and no new launcher for it
    assert.equal(launcher.pid, undefined);
    const next = await launcher.launch(request(["exit 0"]));
    assert.notEqual(launcher.pid, first);
    await until(() => next.exit !== undefined, "the new launcher reports exits");
    process.kill(running.pid, "SIGKILL");
    await until(() => !isAlive(running.pid), "the orphan is gone");
  });
});

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
