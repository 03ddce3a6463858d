/**
 * Process keys against real processes of this machine: a running child is not gone, the same child
 * after it exited is, a pid taken by another process (another start time) is, and a key of another
 * boot or PID namespace is never judged (not gone: the lease's expiry decides then).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, it } from "node:test";
import { currentProcessKey, isProcessGone, processKeyOf } from "./process-key.js";

describe("process keys", { skip: processKeyOf(process.pid) === null ? "no /proc here" : false }, () => {
  it("tell a running process from one that exited", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await once(child, "spawn");
      const key = processKeyOf(child.pid!);
      assert.ok(key, "a running process has a key");
      assert.equal(isProcessGone(key), false);
      child.kill("SIGKILL");
      await once(child, "exit");
      assert.equal(isProcessGone(key), true, "killed and reaped: gone");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("count a pid now used by another process (another start time) as gone, and this process as running", () => {
    const ours = currentProcessKey()!;
    assert.equal(isProcessGone(ours), false);
    const [bootId, pidNamespace, pid, startTime] = ours.split("/");
    assert.equal(isProcessGone([bootId, pidNamespace, pid, String(Number(startTime) - 1)].join("/")), true);
  });

  it("never judge a process of another boot or PID namespace, or a key it cannot read", () => {
    const [bootId, pidNamespace] = currentProcessKey()!.split("/");
    const unusedPid = "4194300";
    assert.equal(isProcessGone([bootId, pidNamespace, unusedPid, "1"].join("/")), true, "the control: on this machine that pid runs nothing");
    assert.equal(isProcessGone(["another-boot", pidNamespace, unusedPid, "1"].join("/")), false);
    assert.equal(isProcessGone([bootId, "pid:[1]", unusedPid, "1"].join("/")), false);
    for (const bad of ["", "garbage", `${bootId}/${pidNamespace}/-1/1`, `${bootId}/${pidNamespace}/12/`]) assert.equal(isProcessGone(bad), false, JSON.stringify(bad));
  });
});
