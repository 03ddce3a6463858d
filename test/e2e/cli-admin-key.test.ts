/**
 * The CLI's automatic use of <data dir>/admin.key: sent to a loopback server run by the key file's
 * owner, never to a listener another local user put on the port (which would otherwise be handed
 * the admin key by the next `hodei` command). Both listeners are real sockets; the other user's is a
 * node process run as uid 65534 (nobody; the test needs root to start it, as CI runs).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "./harness.js";

const isRoot = process.getuid?.() === 0;
const ADMIN_KEY = "hodei_admin_test-key-0123456789";

/** Answers every request 401 (Connect's unauthenticated) and reports each request's Authorization header, one JSON line per request. */
const RECORDER = `
const http = require("node:http");
const server = http.createServer((req, res) => {
  process.stdout.write(JSON.stringify({ authorization: req.headers.authorization ?? null }) + "\\n");
  req.resume();
  res.writeHead(401, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: "unauthenticated", message: "recorded" }));
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\\n"));
`;

const NOBODY = 65534;

/** Runs the recorder (as uid, or as this process's user), resolving with its port and what it has seen so far. */
function startRecorder(uid?: number): Promise<{ port: number; seen: (string | null)[]; child: ChildProcess }> {
  const child = spawn(process.execPath, ["-e", RECORDER], { stdio: ["ignore", "pipe", "inherit"], ...(uid !== undefined && { uid, gid: uid, cwd: "/" }) });
  const seen: (string | null)[] = [];
  return new Promise((resolve, reject) => {
    let buffered = "";
    child.stdout!.on("data", (data: Buffer) => {
      buffered += data.toString();
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = JSON.parse(buffered.slice(0, nl)) as { port?: number; authorization?: string | null };
        buffered = buffered.slice(nl + 1);
        if (line.port) resolve({ port: line.port, seen, child });
        else seen.push(line.authorization ?? null);
      }
    });
    child.once("exit", (code) => reject(new Error(`the recorder exited ${code} before listening`)));
  });
}

describe("the CLI's admin key", { skip: isRoot || process.env.CI ? false : "needs root, to run a listener as another user (uid 65534)" }, () => {
  let dataDir: string;
  const children: ChildProcess[] = [];

  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "hodei-admin-key-"));
    writeFileSync(join(dataDir, "admin.key"), `${ADMIN_KEY}\n`, { mode: 0o600 });
    chmodSync(dataDir, 0o700);
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((child) => (child.exitCode !== null || child.signalCode !== null ? null : new Promise((resolve) => child.once("exit", resolve)))));
    rmSync(dataDir, { recursive: true, force: true });
    assert.ok(children.every((child) => child.exitCode !== null || child.signalCode !== null), "no recorder is left running");
  });

  it("is sent to a server run by the key file's owner", async () => {
    const recorder = await startRecorder();
    children.push(recorder.child);
    const run = await runCli({ url: `http://127.0.0.1:${recorder.port}`, dataDir }, ["jobs"]);
    assert.notEqual(run.code, 0, "the recorder refuses every call");
    assert.deepEqual(recorder.seen, [`Bearer ${ADMIN_KEY}`]);
    assert.match(run.stderr, /recorded \(API key used: .*admin\.key\)/);
  });

  it("is not sent to a listener another user put on the port, and the refusal says why", async () => {
    const recorder = await startRecorder(NOBODY);
    children.push(recorder.child);
    const run = await runCli({ url: `http://127.0.0.1:${recorder.port}`, dataDir }, ["jobs"]);
    assert.notEqual(run.code, 0);
    assert.equal(recorder.seen.length, 1, "the call reached the listener");
    assert.deepEqual(recorder.seen, [null], "without the admin key");
    assert.match(run.stderr, /API key used: not .*admin\.key: it belongs to uid 0, but it is served by uid 65534 \(give --token or HODEI_TOKEN/);
  });
});
