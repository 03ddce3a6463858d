/**
 * The control plane itself misbehaving while jobs run on the local provider: frozen (SIGSTOP, as a
 * paused VM or a long event-loop block would) for longer than the heartbeat timeout, and its SQLite
 * database write-locked by another process for 15 s. Neither may fail a healthy job, lose a log line
 * or end the server; nor may a log it cannot write (stdout on a full disk). The waits here are the faults themselves (how long the server stays frozen or
 * locked); everything else is awaited as an event.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { bearer, eventually, HODEI_BIN, jobWhen, killCluster, leftoverProcesses, ROOT, runCli, sleep, startServerProcess } from "./harness.js";

const HEARTBEAT_TIMEOUT_MS = 3000;

/** A job that prints `count` numbered lines, one every `everyMs`. */
function ticker(count: number, everyMs: number): string {
  return `for i in $(seq 1 ${count}); do echo "line $i"; sleep ${everyMs / 1000}; done`;
}

function expectedLines(count: number): string {
  return Array.from({ length: count }, (_, i) => `line ${i + 1}\n`).join("");
}

async function submitAll(server: { url: string }, commands: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const command of commands) {
    const result = await runCli(server, ["run", "--detach", "--", command]);
    assert.equal(result.code, 0, result.stderr);
    ids.push(result.stdout.trim());
  }
  return ids;
}

describe("a control plane frozen longer than the heartbeat timeout", () => {
  it("fails none of its healthy jobs: every one succeeds with all its output", async () => {
    const server = await startServerProcess({
      HODEI_HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
      HODEI_HEARTBEAT_INTERVAL_MS: "500",
      HODEI_LOCAL_WARM_WORKERS: "0",
    });
    try {
      // Each job prints, then waits for a file to appear, prints again and exits 0.
      const go = join(server.dataDir, "go");
      const ids = await submitAll(server, Array.from({ length: 4 }, () => `echo before; while [ ! -e ${go} ]; do sleep 0.1; done; echo after`));
      for (const id of ids) assert.equal((await jobWhen(server, id, (j) => j.state === "running")).state, "running");
      server.process.kill("SIGSTOP");
      writeFileSync(go, ""); // the jobs finish while the control plane is frozen
      await sleep(HEARTBEAT_TIMEOUT_MS * 2); // frozen well past the heartbeat timeout: nobody reads the sockets
      server.process.kill("SIGCONT");
      for (const id of ids) {
        const job = await jobWhen(server, id, (j) => Boolean(j.timeline.destroyed), 30_000);
        assert.equal(job.state, "succeeded", `job ${id}: ${job.reason}`);
        assert.equal(job.logsIncomplete ?? false, false);
        assert.equal((await runCli(server, ["logs", id])).stdout, "before\nafter\n");
      }
      assert.ok(server.output.some((line) => line.includes("the control plane was not running for a while")), "the absence was noticed and logged");
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      server.process.kill("SIGCONT");
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });
});

describe("the SQLite database write-locked by another process for 15 s", () => {
  it("keeps the server serving, and every job in flight still ends with all its output", async () => {
    const server = await startServerProcess({ HODEI_LOCAL_WARM_WORKERS: "0" });
    const dbPath = join(server.dataDir, "hodei.db");
    let locker: ReturnType<typeof spawn> | undefined;
    try {
      const ids = await submitAll(server, Array.from({ length: 3 }, () => ticker(10, 1000)));
      for (const id of ids) await jobWhen(server, id, (j) => j.state === "running");

      // Another process takes the write lock (as a backup tool or a sqlite3 shell might) and holds it.
      const script = `const D = require("better-sqlite3"); const db = new D(${JSON.stringify(dbPath)});
        db.exec("BEGIN IMMEDIATE"); console.log("locked");
        setTimeout(() => { db.exec("COMMIT"); console.log("released"); db.close(); }, 15000);`;
      locker = spawn(process.execPath, ["-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
      const lines = createInterface({ input: locker.stdout! });
      const released = new Promise<void>((resolve) => lines.on("line", (line) => line === "released" && resolve()));
      await new Promise<void>((resolve) => lines.on("line", (line) => line === "locked" && resolve()));
      const lockedAt = Date.now();

      // While it is held, the server answers health checks and reads.
      let answers = 0;
      while (Date.now() - lockedAt < 12_000) {
        const health = await fetch(`${server.url}/healthz`);
        assert.equal(health.status, 200);
        const read = await fetch(`${server.url}/hodei.v1.JobService/GetJob`, {
          method: "POST",
          headers: { "content-type": "application/json", ...bearer(server) },
          body: JSON.stringify({ id: ids[0] }),
        });
        const body = await read.text();
        assert.equal(read.status, 200, body);
        assert.equal((JSON.parse(body) as { id: string }).id, ids[0]);
        answers++;
        await sleep(500);
      }
      assert.ok(answers >= 5, `the server answered ${answers} times while the database was locked`);
      await released;
      assert.equal(server.process.exitCode, null, "the server is still running");

      for (const id of ids) {
        const job = await jobWhen(server, id, (j) => Boolean(j.timeline.destroyed), 60_000);
        assert.equal(job.state, "succeeded", `job ${id}: ${job.reason}`);
        assert.equal((await runCli(server, ["logs", id])).stdout, expectedLines(10), `job ${id} has every line`);
      }
      const after = await runCli(server, ["run", "--", "echo", "after the lock"]);
      assert.equal(after.code, 0, after.stderr);
      assert.equal(after.stdout, "after the lock\n");
      assert.ok(await eventually(() => server.output.some((l) => /SQLITE_BUSY|database is locked/.test(l))), "the lock was met and logged");
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      locker?.kill("SIGKILL");
      killCluster(server.clusterId);
      await server.stop();
      server.cleanup();
    }
  });
});

describe("the server's log on a full disk (stdout on /dev/full)", () => {
  it("serves on and runs jobs, its log lines waiting instead of ending it", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port: free } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    const clusterId = `t${randomUUID().slice(0, 8)}`;
    const full = openSync("/dev/full", "w");
    const server = spawn(process.execPath, [HODEI_BIN, "server"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", HODEI_PORT: String(port), HODEI_DATA_DIR: dataDir, HODEI_CLUSTER_ID: clusterId, HODEI_PROVIDERS: "local", HODEI_LOCAL_WARM_WORKERS: "0" },
      stdio: ["ignore", full, "pipe"],
    });
    closeSync(full);
    let stderr = "";
    server.stderr!.on("data", (d: Buffer) => (stderr += d));
    const ref = { url: `http://127.0.0.1:${port}`, dataDir, clusterId };
    try {
      const health = await eventually(async () => (await fetch(`${ref.url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => null))?.status === 200 || server.exitCode !== null, 30_000);
      assert.equal(server.exitCode, null, `the server ended: ${stderr}`);
      assert.ok(health, `the server never answered /healthz (it hangs once a log write failed); its stderr: ${stderr}`);
      for (const word of ["one", "two"]) {
        const run = await runCli(ref, ["run", "--", "echo", word]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout, `${word}\n`);
      }
      assert.equal(server.exitCode, null, "the server still runs");
      // And it stops when told to, though its last lines cannot be written.
      const exited = new Promise<number | null>((resolve) => server.once("exit", (code) => resolve(code)));
      server.kill("SIGTERM");
      const code = await Promise.race([exited, sleep(15_000).then(() => "still running")]);
      assert.equal(code, 0, "SIGTERM ends it within 15 s, with code 0");
    } finally {
      if (server.exitCode === null) {
        const exited = new Promise((resolve) => server.once("exit", resolve));
        server.kill("SIGKILL");
        await exited;
      }
      assert.deepEqual(await leftoverProcesses(ref), []);
      killCluster(clusterId);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a rejection nobody handles while the server starts", () => {
  it("is logged, and the server starts and serves", async () => {
    // A preload that leaves a rejected promise unhandled as the server makes its data directory,
    // before it listens: a bug of that kind in any task started during the start. (Until the start
    // first waits on I/O, Node reports no rejection: the preload delays the listen to make it wait.)
    const dir = mkdtempSync(join(tmpdir(), "hodei-preload-"));
    const dataDir = join(dir, "data");
    const preload = join(dir, "reject-while-starting.cjs");
    writeFileSync(
      preload,
      `if (require("node:worker_threads").isMainThread) {
  const fs = require("node:fs");
  const mkdirSync = fs.mkdirSync;
  fs.mkdirSync = function (path, ...rest) {
    if (String(path).startsWith(${JSON.stringify(dataDir)})) {
      fs.mkdirSync = mkdirSync;
      Promise.reject(new Error("a rejection nobody handles, while the server starts"));
    }
    return mkdirSync.call(this, path, ...rest);
  };
  // A start that waits on I/O before it listens, as one on PostgreSQL does: the rejection is seen then.
  const net = require("node:net");
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    net.Server.prototype.listen = listen;
    setTimeout(() => listen.apply(this, args), 100);
    return this;
  };
}
`,
    );
    try {
      const server = await startServerProcess({ HODEI_LOCAL_WARM_WORKERS: "0" }, { dataDir, nodeArgs: ["--require", preload] });
      try {
        await eventually(async () => server.output.join("\n").includes("a rejection nobody handles"), 5000);
        assert.match(server.output.join("\n"), /unhandled rejection while starting .*a rejection nobody handles, while the server starts/);
        const run = await runCli(server, ["run", "--", "echo", "served"]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout, "served\n");
      } finally {
        await server.stop();
        server.cleanup();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
