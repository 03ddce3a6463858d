// LocalProvider: the provider contract on real agent processes, plus what only local does (its
// workers are process trees found by marker variables). Every test proves it left no process behind.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, before, beforeEach, describe, it } from "node:test";
import { PermanentError } from "../core/errors.js";
import { LAUNCHER_STALL_MS, LocalProvider, type LocalProviderOptions, waitForExit } from "./local.js";
import { LocalCgroups } from "./local-cgroup.js";
import { findMarkedProcesses, isAlive } from "./process-table.js";
import type { ProviderResource } from "./provider.js";
import { describeProvider, eventually, type ProviderHarness, UNREACHABLE_SERVER_URL, workerSpec } from "./provider.contract.js";
import { tempDir } from "../../test/fixtures/temp-dir.js";

const ROOT = resolve(import.meta.dirname, "../..");
const AGENT_PATH = join(ROOT, "dist", "agent.cjs");
const CLUSTER_ID = `test-${randomUUID().slice(0, 8)}`;
const OTHER_CLUSTER_ID = `${CLUSTER_ID}-other`;
/** Above the largest pid Linux hands out (pid_max is at most 2^22). */
const NEVER_A_PID = String(2 ** 22 + 1);
const GRACE_MS = 2000;

function localOptions(workRoot: string, overrides: Partial<LocalProviderOptions> = {}): LocalProviderOptions {
  return {
    clusterId: CLUSTER_ID,
    agentPath: AGENT_PATH,
    nodePath: process.execPath,
    workRoot,
    baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    // The agent retries registering with the unreachable server this long, then exits.
    agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "30000" },
    ...overrides,
  };
}

function newWorkRoot(): string {
  return mkdtempSync(join(tmpdir(), "hodei-local-test-"));
}

describe("LocalProvider", () => {
  before(() => {
    assert.ok(existsSync(AGENT_PATH), `agent bundle missing at ${AGENT_PATH}: run "node scripts/build.mjs" first`);
  });

  afterEach(() => {
    assert.deepEqual(findMarkedProcesses(CLUSTER_ID), [], `no process of cluster ${CLUSTER_ID} is left behind`);
  });

  describeProvider("local", async (): Promise<ProviderHarness> => {
    const workRoot = newWorkRoot();
    const provider = new LocalProvider(localOptions(workRoot));
    return {
      provider,
      cleanup: async () => {
        await provider.close();
        rmSync(workRoot, { recursive: true, force: true });
      },
      killWorker: async (resource) => {
        process.kill(Number(resource.resourceId), "SIGKILL");
      },
      unknownResourceId: NEVER_A_PID,
    };
  });

  describe("local worker processes", () => {
    let workRoot: string;
    let provider: LocalProvider;
    let started: ProviderResource[];
    let helpers: ChildProcess[];

    beforeEach(() => {
      workRoot = newWorkRoot();
      provider = new LocalProvider(localOptions(workRoot));
      started = [];
      helpers = [];
    });

    afterEach(async () => {
      for (const child of helpers) {
        try {
          process.kill(child.pid!, "SIGKILL");
        } catch {
          // Already gone: the test (or stop) took care of it.
        }
      }
      for (const resource of started) await provider.stop(resource.resourceId, GRACE_MS);
      // Idle warm agents exit once released: a test that failed midway leaves none to the next ones.
      await provider.close();
      await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000);
      rmSync(workRoot, { recursive: true, force: true });
    });

    /**
     * The pool's idle agents, once there are `count`: the marked processes whose warm id names a log
     * file in the pool's directory. Marked processes alone are not enough: a child an agent forks
     * (its warm-up shell) carries the agent's markers until it execs, so a scan can catch it.
     */
    async function idleAgents(count: number) {
      const poolDir = join(workRoot, ".pool");
      const found = await eventually(async () => findMarkedProcesses(CLUSTER_ID).filter((p) => existsSync(join(poolDir, `${p.warmId}.log`))), (found) => found.length === count, 5000);
      // And the provider knows them: an agent's process exists a moment before the launcher's answer is handled.
      await eventually(() => provider.health(), (h) => h.detail.includes(` ${count} warm`), 5000);
      return found;
    }

    async function start(spec = workerSpec()): Promise<ProviderResource> {
      const resource = await provider.start(spec);
      started.push(resource);
      return resource;
    }

    /**
     * Starts a detached `sleep 300` carrying the markers a job process of `agentPid` would carry,
     * and waits until the process table shows them (until exec, a fork still shows our own env).
     */
    async function spawnMarked(clusterId: string, workerId: string, agentPid: number): Promise<ChildProcess> {
      const child = spawn("sleep", ["300"], {
        detached: true,
        stdio: "ignore",
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HODEI_MANAGED_BY: "hodei",
          HODEI_PROVIDER: "local",
          HODEI_CLUSTER_ID: clusterId,
          HODEI_WORKER_ID: workerId,
          HODEI_WORKER_PID: String(agentPid),
        },
      });
      child.unref();
      helpers.push(child);
      assert.ok(child.pid, "sleep started");
      const seen = await eventually(
        async () => findMarkedProcesses(clusterId).some((p) => p.pid === child.pid),
        (found) => found,
        5000,
      );
      assert.equal(seen, true, "the simulated job process carries its markers");
      return child;
    }

    it("names a worker by its agent's process id, which carries the cluster markers and a pid file", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      assert.equal(provider.resourceType, "process_id");
      assert.equal(resource.resourceType, "process_id");
      assert.match(resource.resourceId, /^[1-9][0-9]*$/);
      const agent = await eventually(
        async () => findMarkedProcesses(CLUSTER_ID).find((p) => p.pid === Number(resource.resourceId)),
        (p) => p !== undefined,
        5000,
      );
      assert.ok(agent, "the agent process carries our markers");
      assert.notEqual(agent.warmId, "", "an agent is marked by the id it was started under");
      assert.equal(agent.workerPid, agent.pid, "the agent is its own worker pid");
      assert.equal(agent.pgid, agent.pid, "the agent leads its own process group");
      const pidFile = readFileSync(join(workRoot, spec.workerId, ".agent-pid"), "utf8");
      assert.equal(pidFile, resource.resourceId, "the worker's directory records its agent");
      assert.deepEqual(
        (await provider.list()).map((r) => [r.resourceId, r.workerId]),
        [[resource.resourceId, spec.workerId]],
      );
    });

    it("hands the OTP token to the agent on stdin: never in its environment or on its command line", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      await eventually(
        async () => findMarkedProcesses(CLUSTER_ID).some((p) => p.pid === Number(resource.resourceId)),
        (found) => found,
        5000,
      );
      const cmdline = readFileSync(`/proc/${resource.resourceId}/cmdline`, "latin1");
      const environ = readFileSync(`/proc/${resource.resourceId}/environ`, "latin1").split("\0");
      assert.equal(cmdline.includes(spec.otpToken), false);
      assert.equal(environ.some((e) => e.includes(spec.otpToken)), false);
      assert.ok(environ.includes(`HODEI_SERVER_URL=${UNREACHABLE_SERVER_URL}`));
      assert.ok(environ.includes(`HODEI_CLUSTER_ID=${CLUSTER_ID}`));
    });

    it("keeps warm agents booted, hands the next worker to one, and releases them on close", async () => {
      provider = new LocalProvider(localOptions(workRoot, { warmWorkers: 1 }));
      const first = await start();
      const idle = await idleAgents(1);
      assert.ok(idle.every((p) => p.pid !== Number(first.resourceId)), "the first worker's agent is not idle");
      assert.equal(idle.length, 1, "one idle agent waits");
      assert.deepEqual((await provider.list()).map((r) => r.resourceId), [first.resourceId], "an idle agent is not a worker");
      const second = await start();
      assert.equal(second.resourceId, String(idle[0].pid), "the next worker is the warm agent");
      await provider.stop(first.resourceId, GRACE_MS);
      await provider.stop(second.resourceId, GRACE_MS);
      await provider.close();
      const left = await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000);
      assert.deepEqual(left, [], "released idle agents exit");
    });

    it("stop also kills the job processes that carry the worker's markers", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      const job = await spawnMarked(CLUSTER_ID, spec.workerId, Number(resource.resourceId));
      await provider.stop(resource.resourceId, GRACE_MS);
      assert.equal(isAlive(job.pid!), false, "the job process is gone");
      assert.equal(isAlive(Number(resource.resourceId)), false, "the agent is gone");
    });

    it("stop finds and kills the job processes of an agent that already died", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      const agentPid = Number(resource.resourceId);
      const job = await spawnMarked(CLUSTER_ID, spec.workerId, agentPid);
      process.kill(agentPid, "SIGKILL");
      await eventually(async () => isAlive(agentPid), (alive) => !alive, 5000);
      const listed = await provider.list();
      assert.deepEqual(
        listed.map((r) => [r.resourceId, r.workerId]),
        [[resource.resourceId, spec.workerId]],
        "the orphaned job process still maps back to its worker",
      );
      await provider.stop(resource.resourceId, GRACE_MS);
      assert.equal(isAlive(job.pid!), false);
    });

    it("never touches processes of another cluster, even with the same worker markers", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      const foreign = await spawnMarked(OTHER_CLUSTER_ID, spec.workerId, Number(resource.resourceId));
      assert.equal((await provider.list()).some((r) => r.resourceId === String(foreign.pid)), false, "not listed");
      await provider.stop(resource.resourceId, GRACE_MS);
      await provider.stop(String(foreign.pid), GRACE_MS); // even when asked to by its pid
      assert.equal(isAlive(foreign.pid!), true, "the other cluster's process survived");
      assert.ok(findMarkedProcesses(OTHER_CLUSTER_ID).some((p) => p.pid === foreign.pid));
    });

    it("a restarted control plane finds a running worker by its markers and can stop it", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      await eventually(
        async () => findMarkedProcesses(CLUSTER_ID).some((p) => p.pid === Number(resource.resourceId)),
        (found) => found,
        5000,
      );
      const restarted = new LocalProvider(localOptions(workRoot));
      assert.deepEqual(await restarted.inspect(resource.resourceId), { state: "running" });
      assert.deepEqual(
        (await restarted.list()).map((r) => [r.resourceId, r.workerId]),
        [[resource.resourceId, spec.workerId]],
      );
      await restarted.stop(resource.resourceId, GRACE_MS);
      assert.deepEqual(await restarted.inspect(resource.resourceId), { state: "gone" });
      assert.equal(isAlive(Number(resource.resourceId)), false);
    });

    it("stop removes the worker's work directory", async () => {
      const spec = workerSpec();
      const resource = await start(spec);
      assert.equal(existsSync(join(workRoot, spec.workerId)), true);
      await provider.stop(resource.resourceId, GRACE_MS);
      assert.equal(existsSync(join(workRoot, spec.workerId)), false);
    });

    it("gives a job with limits a cgroup of its own, named in its assignment, and stop removes it; without a usable cgroup it says nothing is enforced", async () => {
      const cgroupRoot = tempDir("hodei-fake-cgroup2-");
      writeFileSync(join(cgroupRoot, "cgroup.controllers"), "cpu memory\n");
      const mountinfo = join(cgroupRoot, "mountinfo");
      writeFileSync(mountinfo, `41 31 0:38 / ${cgroupRoot} rw,relatime - cgroup2 cgroup2 rw\n`);
      const limited = new LocalProvider(localOptions(workRoot, { cgroups: new LocalCgroups({ clusterId: CLUSTER_ID, mountinfoPath: mountinfo }) }));
      const spec = workerSpec({ memoryMb: 64, cpuMillis: 500 });
      const resource = await limited.start(spec);
      started.push(resource);
      const group = join(cgroupRoot, "hodei", CLUSTER_ID, spec.workerId);
      assert.match(resource.resourcesApplied ?? "", new RegExp(`^memory 64 MiB: enforced by the job's own cgroup \\(v2\\) ${group}, swap included; cpu 0\\.5: enforced`));
      assert.equal(readFileSync(join(group, "memory.max"), "utf8"), String(64 * 1024 * 1024));
      // A fake cgroupfs is a plain directory: rmdir needs it empty, as the kernel's needs it without processes.
      for (const file of ["memory.max", "cpu.max"]) rmSync(join(group, file));
      await limited.stop(resource.resourceId, GRACE_MS);
      assert.equal(existsSync(group), false, "stop removed the job's cgroup");
      assert.equal(existsSync(join(workRoot, spec.workerId)), false);

      const unlimited = new LocalProvider(localOptions(workRoot, { cgroups: new LocalCgroups({ clusterId: CLUSTER_ID, mountinfoPath: join(cgroupRoot, "no-mountinfo") }) }));
      const plain = await unlimited.start(workerSpec({ memoryMb: 64 }));
      started.push(plain);
      assert.match(plain.resourcesApplied ?? "", /^memory 64 MiB: NOT enforced: no cgroup hierarchy on this machine has the memory controller/);
      assert.match((await unlimited.health()).detail, /memory limits not enforced/);
      await unlimited.stop(plain.resourceId, GRACE_MS);
    });

    it("refuses a node selector or tolerations, which only the kubernetes provider can honour", async () => {
      await assert.rejects(provider.start(workerSpec({ nodeSelector: { disktype: "ssd" } })), (err: unknown) => err instanceof PermanentError && /kubernetes provider/.test(err.message));
    });

    it("refuses to start, permanently, when the agent bundle is missing", async () => {
      const broken = new LocalProvider(localOptions(workRoot, { agentPath: join(workRoot, "no-such-agent.cjs") }));
      await assert.rejects(broken.start(workerSpec()), (err: unknown) => err instanceof PermanentError && /npm run build/.test(err.message));
      assert.equal((await broken.health()).healthy, false);
      assert.deepEqual(await broken.list(), []);
    });

    it("never hands a job to an idle agent that died but whose exit is not yet handled", async () => {
      provider = new LocalProvider(localOptions(workRoot, { warmWorkers: 1 }));
      const first = await start();
      const idle = await idleAgents(1);
      assert.ok(idle.every((p) => p.pid !== Number(first.resourceId)), "the first worker's agent is not idle");
      assert.equal(idle.length, 1, "one idle agent waits");
      // Killed from outside, and seen dead in /proc (a zombie, or already reaped by the launcher)
      // before this process's event loop handles the report of its exit.
      process.kill(idle[0].pid, "SIGKILL");
      const deadline = Date.now() + 5000;
      while (isAlive(idle[0].pid) && Date.now() < deadline);
      assert.equal(isAlive(idle[0].pid), false, "the killed agent is dead in /proc, its exit not yet handled here");
      const second = await start();
      assert.notEqual(second.resourceId, String(idle[0].pid), "a new agent takes the job, not the dead one");
      assert.equal(isAlive(Number(second.resourceId)), true);
      await provider.stop(first.resourceId, GRACE_MS);
      await provider.stop(second.resourceId, GRACE_MS);
      await provider.close();
      assert.deepEqual(await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000), [], "released idle agents exit");
    });

    it("starts agents through its launcher, never by forking the control plane, and the launcher ends on close", async () => {
      provider = new LocalProvider(localOptions(workRoot, { warmWorkers: 1 }));
      assert.equal(provider.launcherPid, undefined, "no launcher before the first start");
      const first = await start();
      const launcherPid = provider.launcherPid;
      assert.ok(launcherPid && launcherPid !== process.pid, "a launcher process runs");
      const [idle] = await idleAgents(1);
      for (const pid of [Number(first.resourceId), idle.pid]) assert.equal(parentOf(pid), launcherPid, `agent ${pid} is the launcher's child`);
      assert.equal(parentOf(launcherPid), process.pid, "the launcher is this process's child");
      await provider.stop(first.resourceId, GRACE_MS);
      await provider.close();
      assert.equal(await eventually(async () => isAlive(launcherPid), (alive) => !alive, 5000), false, "the launcher exited on close");
      assert.deepEqual(await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000), [], "its idle agent exited with it");
    });

    it("a launcher killed from outside: idle agents exit, a worker is followed by its markers and stopped, and the next start makes a new launcher", async () => {
      provider = new LocalProvider(localOptions(workRoot, { warmWorkers: 1 }));
      const first = await start();
      await idleAgents(1);
      const launcherPid = provider.launcherPid!;
      process.kill(launcherPid, "SIGKILL");
      // The idle agent's stdin closed with the launcher: it exits, and leaves the pool.
      await idleAgents(0);
      const health = await eventually(() => provider.health(), (h) => /launcher was lost/.test(h.detail) && / 0 warm/.test(h.detail), 5000);
      assert.match(health.detail, /the launcher was lost \(the launcher exited \(SIGKILL\)\)/);
      assert.deepEqual(await provider.inspect(first.resourceId), { state: "running" }, "the worker's agent runs on, found by its markers");
      const second = await start();
      assert.ok(provider.launcherPid && provider.launcherPid !== launcherPid, "a new launcher started");
      assert.doesNotMatch((await provider.health()).detail, /launcher was lost/, "the new launcher answered: the loss is over");
      assert.equal(parentOf(Number(second.resourceId)), provider.launcherPid);
      await provider.stop(first.resourceId, GRACE_MS);
      assert.deepEqual(await provider.inspect(first.resourceId), { state: "gone" }, "stopped without its launcher");
      await provider.stop(second.resourceId, GRACE_MS);
      await provider.close();
      assert.deepEqual(await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000), [], "nothing is left");
    });

    it("a stopped launcher: a start gives up at its deadline and its late agent is released, health names the launcher, and once resumed the provider serves again", async () => {
      let nowMs = 1_000_000;
      provider = new LocalProvider(localOptions(workRoot, { nowMs: () => nowMs }));
      provider.prepare();
      const launcherPid = provider.launcherPid!;
      process.kill(launcherPid, "SIGSTOP");
      try {
        const giveUp = new AbortController();
        const starting = provider.start(workerSpec(), giveUp.signal);
        nowMs += LAUNCHER_STALL_MS - 1;
        assert.equal((await provider.health()).healthy, true, "a launch still within its time");
        nowMs += 2;
        const health = await provider.health();
        assert.equal(health.healthy, false);
        assert.match(health.detail, new RegExp(`the agent launcher \\(pid ${launcherPid}\\) has not answered a start for 5 s: is it stopped\\?`));
        giveUp.abort(new Error("start: past its deadline"));
        await assert.rejects(starting, /past its deadline/);
      } finally {
        process.kill(launcherPid, "SIGCONT");
      }
      // The launcher answers the start given up on (nothing waits: healthy again); that agent is
      // released, and exits, and its log file goes with it.
      assert.equal((await eventually(() => provider.health(), (h) => h.healthy, 5000)).healthy, true, "the launch was answered");
      assert.deepEqual(await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000), [], "the late agent exited");
      assert.deepEqual(await eventually(async () => readdirSync(join(workRoot, ".pool")), (names) => names.length === 0, 5000), [], "its log file went with it");
      const resource = await start();
      assert.equal(isAlive(Number(resource.resourceId)), true, "the provider serves again");
    });

    it("waiting for an agent's exit leaves no listener behind when it times out", async () => {
      const child = spawn("sleep", ["30"], { stdio: "ignore" });
      helpers.push(child);
      const before = child.listenerCount("exit");
      for (let i = 0; i < 5; i++) await waitForExit({ child }, 5);
      assert.equal(child.listenerCount("exit"), before, "each timed-out wait removed its listener");
      const exited = waitForExit({ child }, 5000);
      child.kill("SIGKILL");
      await exited;
      assert.equal(child.listenerCount("exit"), before, "a wait that saw the exit leaves none either");
    });

    it("fails a start whose work directory cannot be made, and its agent exits instead of leaking", async () => {
      const spec = workerSpec();
      writeFileSync(join(workRoot, spec.workerId), "a file where the work directory goes");
      await assert.rejects(start(spec), /prepare the work directory .*EEXIST|ENOTDIR/);
      const left = await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000);
      assert.deepEqual(left, [], "the agent taken for it exited");
    });

    it("goes on when the log file of an idle agent that exits cannot be removed", async () => {
      provider = new LocalProvider(localOptions(workRoot, { warmWorkers: 1 }));
      const first = await start();
      const idle = await idleAgents(1);
      assert.ok(idle.every((p) => p.pid !== Number(first.resourceId)), "the first worker's agent is not idle");
      assert.equal(idle.length, 1, "one idle agent waits");
      // Its log file turns into a directory with something in it: removing it throws (EISDIR).
      const poolDir = join(workRoot, ".pool");
      const [logName] = readdirSync(poolDir);
      rmSync(join(poolDir, logName));
      mkdirSync(join(poolDir, logName, "inside"), { recursive: true });
      process.kill(idle[0].pid, "SIGKILL");
      // Its exit is handled (it leaves the pool), and the provider serves on.
      assert.match((await eventually(() => provider.health(), (h) => / 0 warm/.test(h.detail), 5000)).detail, / 0 warm/);
      const second = await start();
      assert.notEqual(second.resourceId, String(idle[0].pid));
      await provider.stop(first.resourceId, GRACE_MS);
      await provider.stop(second.resourceId, GRACE_MS);
      await provider.close();
      assert.deepEqual(await eventually(async () => findMarkedProcesses(CLUSTER_ID), (found) => found.length === 0, 5000), [], "released idle agents exit");
    });

    it("fails a start whose agent process cannot be created (here: no Node binary there) with the reason, and the process goes on", async () => {
      // The operating system's refusal (ENOENT here, EAGAIN at the process limit) comes as an
      // 'error' event on the child: unheard, it would end the control plane (the test runner reports it).
      const missing = join(workRoot, "no-such-node");
      const broken = new LocalProvider(localOptions(workRoot, { nodePath: missing }));
      await assert.rejects(broken.start(workerSpec()), (err: Error) => err.message.includes(`could not start ${missing}`) && /ENOENT/.test(err.message));
      await broken.close();
      // The warm pool's refill, off any job's path: the first start works, then the binary goes away.
      const node = join(workRoot, "node-that-goes-away");
      symlinkSync(process.execPath, node);
      const pooled = new LocalProvider(localOptions(workRoot, { nodePath: node, warmWorkers: 1 }));
      try {
        const spec = workerSpec();
        const resource = await pooled.start(spec);
        rmSync(node);
        const health = await eventually(() => pooled.health(), (h) => /last refill failed/.test(h.detail));
        assert.match(health.detail, /0 warm \(the last refill failed: local: could not start .*node-that-goes-away.*ENOENT/);
        await pooled.stop(resource.resourceId, GRACE_MS);
      } finally {
        await pooled.close();
      }
      assert.deepEqual(readdirSync(join(workRoot, ".pool")), [], "no log file of a refused agent is left");
    });
  });
});

/** A process's parent pid, from /proc (undefined once it is gone). */
function parentOf(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1].split(" ")[1]);
  } catch {
    return undefined;
  }
}
