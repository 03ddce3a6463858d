/**
 * Local jobs' cgroups: on this machine's real cgroup hierarchy when it has a usable memory
 * controller (root, cgroup v1 or v2): the limits are written, a job over its memory is OOM-killed
 * and counted, remove() kills what is left and removes the group; on a fake cgroup v2 tree, the v2
 * files; and on a machine with no usable cgroup, a plain statement that nothing is enforced.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { joinCgroupArgv } from "../agent/job-cgroup.js";
import { LocalCgroups, readOomKills } from "./local-cgroup.js";
import { tempDir } from "../../test/fixtures/temp-dir.js";

/** A mountinfo file describing the given cgroup mounts. */
function mountinfo(mounts: { path: string; fstype: "cgroup" | "cgroup2"; options: string }[]): string {
  const file = join(tempDir("hodei-mountinfo-"), "mountinfo");
  writeFileSync(file, mounts.map((m, i) => `${30 + i} 23 0:${40 + i} / ${m.path} rw,relatime - ${m.fstype} ${m.fstype} ${m.options}`).join("\n") + "\n");
  return file;
}

const realCgroups = new LocalCgroups({ clusterId: `test-${randomUUID().slice(0, 8)}` });
const isUsableHere = process.getuid?.() === 0 && /memory limits by cgroup/.test(realCgroups.describe());

describe("LocalCgroups", () => {
  describe("on this machine's cgroups", { skip: isUsableHere ? false : `no writable cgroup memory controller here: ${realCgroups.describe()}` }, () => {
    const workers: string[] = [];
    after(async () => {
      for (const id of workers) await realCgroups.remove(id);
      realCgroups.removeEmptyBase();
    });

    it("writes the job's limits, has a job over its memory OOM-killed and counted, and removes the group with what is left in it", async () => {
      const workerId = randomUUID();
      workers.push(workerId);
      const { cgroup, applied } = realCgroups.create(workerId, { memoryMb: 32, cpuMillis: 500 });
      assert.ok(cgroup, applied);
      assert.match(applied, /^memory 32 MiB: enforced by the job's own cgroup \(v[12]\) .*; cpu 0\.5: enforced by the job's own cgroup/);
      const memoryDir = dirname(cgroup.oomCount);
      const limit = existsSync(join(memoryDir, "memory.max")) ? readFileSync(join(memoryDir, "memory.max"), "utf8") : readFileSync(join(memoryDir, "memory.limit_in_bytes"), "utf8");
      assert.equal(limit.trim(), String(32 * 1024 * 1024));
      assert.equal(readOomKills(cgroup.oomCount), 0);

      // What the agent runs: the job's shell joins the group, then the command holds 200 MB.
      const hog = joinCgroupArgv(cgroup.procs, ["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"]);
      const result = spawnSync(hog[0], hog.slice(1), { encoding: "utf8" });
      assert.equal(result.status, 137, `killed by SIGKILL (exit 128+9); stderr: ${result.stderr}`);
      // At least one: the kernel may kill more than one process of the group (the pipe's two ends).
      // The agent asks only whether the count grew while the job ran (OomWatch).
      const kills = readOomKills(cgroup.oomCount) ?? 0;
      assert.ok(kills >= 1, `the OOM killer's kill is counted in the job's group (counted ${kills})`);

      // A process left in the group (one that dropped our markers, say) goes with it.
      const sleeper = joinCgroupArgv(cgroup.procs, ["sh", "-c", "exec env -i sleep 300"]);
      const child = spawn(sleeper[0], sleeper.slice(1), { stdio: "ignore" });
      const exited = new Promise((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.ok(readFileSync(cgroup.procs[0], "utf8").includes(String(child.pid)));
      await realCgroups.remove(workerId);
      assert.equal(await exited, "SIGKILL");
      for (const procs of cgroup.procs) assert.equal(existsSync(join(procs, "..")), false, "the group is gone");
      await realCgroups.remove(workerId); // idempotent
    });

    it("throttles a job to its cpu share", () => {
      const workerId = randomUUID();
      workers.push(workerId);
      const { cgroup } = realCgroups.create(workerId, { memoryMb: 0, cpuMillis: 200 });
      assert.ok(cgroup);
      assert.equal(cgroup.oomCount, "", "memory not limited: no OOM count to read");
      const dir = cgroup.procs[0].replace(/\/cgroup\.procs$/, "");
      const quota = existsSync(join(dir, "cpu.max")) ? readFileSync(join(dir, "cpu.max"), "utf8").trim() : `${readFileSync(join(dir, "cpu.cfs_quota_us"), "utf8").trim()} ${readFileSync(join(dir, "cpu.cfs_period_us"), "utf8").trim()}`;
      assert.equal(quota, "20000 100000");
      const spin = joinCgroupArgv(cgroup.procs, ["sh", "-c", "timeout 1 sh -c 'while :; do :; done'; true"]);
      spawnSync(spin[0], spin.slice(1));
      const stat = readFileSync(join(dir, "cpu.stat"), "utf8");
      assert.ok(Number(/nr_throttled (\d+)/.exec(stat)?.[1] ?? 0) > 0, `throttled: ${stat}`);
    });
  });

  it("uses cgroup v2 where the unified hierarchy has the controllers: memory.max, no swap, cpu.max", () => {
    const root = tempDir("hodei-cgroup2-");
    writeFileSync(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    const cgroups = new LocalCgroups({ clusterId: "c1", mountinfoPath: mountinfo([{ path: root, fstype: "cgroup2", options: "rw" }]) });
    const workerDir = join(root, "hodei", "c1", "w1");
    mkdirSync(workerDir, { recursive: true });
    writeFileSync(join(workerDir, "memory.swap.max"), "max"); // a real cgroupfs makes it with the group
    const { cgroup, applied } = cgroups.create("w1", { memoryMb: 64, cpuMillis: 1500 });
    assert.deepEqual(cgroup, { procs: [join(workerDir, "cgroup.procs")], oomCount: join(workerDir, "memory.events") });
    assert.equal(readFileSync(join(workerDir, "memory.max"), "utf8"), String(64 * 1024 * 1024));
    assert.equal(readFileSync(join(workerDir, "memory.swap.max"), "utf8"), "0");
    assert.equal(readFileSync(join(workerDir, "cpu.max"), "utf8"), "150000 100000");
    assert.match(applied, /memory 64 MiB: enforced by the job's own cgroup \(v2\) .*swap included; cpu 1\.5: enforced .*; the agent itself is not counted$/);
    for (const dir of [root, join(root, "hodei"), join(root, "hodei", "c1")]) assert.ok(existsSync(join(dir, "cgroup.subtree_control")), `controllers enabled below ${dir}`);
  });

  it("says plainly that nothing is enforced on a machine with no cgroup controller, or none it may write", () => {
    const none = new LocalCgroups({ clusterId: "c1", mountinfoPath: mountinfo([]) });
    const unlimited = none.create("w1", { memoryMb: 64, cpuMillis: 500 });
    assert.equal(unlimited.cgroup, null);
    assert.match(unlimited.applied, /^memory 64 MiB: NOT enforced: no cgroup hierarchy on this machine has the memory controller \(no cgroup v2 mount\); the job may use all of this machine's memory; cpu 0\.5: NOT enforced/);
    assert.match(none.describe(), /memory limits not enforced/);
    const hybrid = tempDir("hodei-hybrid-");
    writeFileSync(join(hybrid, "cgroup.controllers"), "hugetlb\n");
    const v2Only = new LocalCgroups({ clusterId: "c1", mountinfoPath: mountinfo([{ path: hybrid, fstype: "cgroup2", options: "rw" }]) });
    assert.match(v2Only.create("w1", { memoryMb: 64, cpuMillis: 0 }).applied, /cgroup v2 at .* offers: hugetlb/);
    const readOnly = new LocalCgroups({ clusterId: "c1", mountinfoPath: mountinfo([{ path: "/dev/null", fstype: "cgroup", options: "rw,memory" }]) });
    assert.match(readOnly.create("w1", { memoryMb: 64, cpuMillis: 0 }).applied, /memory 64 MiB: NOT enforced: cannot make cgroups under \/dev\/null\/hodei\/c1 \(v1\): ENOTDIR/);
    assert.deepEqual(none.create("w1", { memoryMb: 0, cpuMillis: 0 }), { cgroup: null, applied: "" }, "no limits asked: nothing to say");
  });
});
