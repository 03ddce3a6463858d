/**
 * The agent's side of resource limits: the job's shell joins its cgroup before the command runs (or
 * refuses to run), and the OOM kill count is found in the agent's own cgroup under v1 and v2.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { joinCgroupArgv, OomWatch, ownOomCountFile, readOomKills, wrapJobArgv } from "./job-cgroup.js";
import { tempDir } from "../../test/fixtures/temp-dir.js";

describe("the job's cgroup, from the agent", () => {
  it("has the job's shell write its own pid to every cgroup.procs, then run the command as that same process", () => {
    const dir = tempDir("hodei-join-");
    const procs = [join(dir, "memory.procs"), join(dir, "cpu.procs")];
    for (const file of procs) writeFileSync(file, "");
    const argv = joinCgroupArgv(procs, ["sh", "-c", 'echo "pid $$"; echo "args: $0 $1"', "a b", "c"]);
    const result = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    const pid = /pid (\d+)/.exec(result.stdout)?.[1];
    assert.ok(pid);
    for (const file of procs) assert.equal(readFileSync(file, "utf8").trim(), pid, `${file} got the job's pid before it ran`);
    assert.match(result.stdout, /args: a b c\n/, "the command's own arguments are untouched");
  });

  it("gives the job the OOM score it is given (the kernel kills it before its agent), inherited by its children", () => {
    const argv = wrapJobArgv({ procs: [], oomScoreAdj: 1000 }, ["sh", "-c", "cat /proc/self/oom_score_adj; sh -c 'cat /proc/self/oom_score_adj'"]);
    const result = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, "1000\n1000\n");
  });

  it("does not run the command when a cgroup cannot be joined (exit 125, the reason on stderr)", () => {
    const argv = joinCgroupArgv(["/nonexistent/hodei/cgroup.procs"], ["sh", "-c", "echo ran"]);
    const result = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
    assert.equal(result.status, 125);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /cannot join the job's cgroup \(\/nonexistent\/hodei\/cgroup.procs\); not running it unlimited/);
  });

  it("reads oom_kill from memory.events (v2) and memory.oom_control (v1)", () => {
    const dir = tempDir("hodei-oom-");
    writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n");
    writeFileSync(join(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n");
    assert.equal(readOomKills(join(dir, "memory.events")), 2);
    assert.equal(readOomKills(join(dir, "memory.oom_control")), 7);
    assert.equal(readOomKills(join(dir, "missing")), null);
  });

  it("finds a container's own count: v1 by the memory controller's line, v2 by the 0:: line, at the path or at the namespace root", () => {
    const root = tempDir("hodei-cgroupfs-");
    mkdirSync(join(root, "memory"), { recursive: true });
    writeFileSync(join(root, "memory", "memory.oom_control"), "oom_kill 0\n");
    // Docker on cgroup v1: the path names the host's view, the container sees its own group at the root.
    const v1 = "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n";
    assert.equal(ownOomCountFile(v1, root), join(root, "memory", "memory.oom_control"));
    const v2Root = tempDir("hodei-cgroup2-");
    mkdirSync(join(v2Root, "kubepods", "pod1"), { recursive: true });
    writeFileSync(join(v2Root, "kubepods", "pod1", "memory.events"), "oom_kill 0\n");
    assert.equal(ownOomCountFile("0::/kubepods/pod1\n", v2Root), join(v2Root, "kubepods", "pod1", "memory.events"));
    writeFileSync(join(v2Root, "memory.events"), "oom_kill 0\n");
    assert.equal(ownOomCountFile("0::/\n", v2Root), join(v2Root, "memory.events"), "a cgroup namespace: its root");
    assert.equal(ownOomCountFile("0::/elsewhere\n", tempDir("hodei-none-")), "", "nothing readable: no detection");
  });

  it("reports an OOM kill only when the count grew while the job ran", () => {
    const file = join(tempDir("hodei-watch-"), "memory.events");
    writeFileSync(file, "oom_kill 4\n");
    const watch = new OomWatch(file);
    assert.equal(watch.wasKilled(), false, "kills before the job started are not its");
    writeFileSync(file, "oom_kill 5\n");
    assert.equal(watch.wasKilled(), true);
    assert.equal(new OomWatch("").wasKilled(), false, "no count: never claims an OOM kill");
  });
});
