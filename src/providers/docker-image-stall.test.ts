/**
 * The default image's build against a fake daemon that answers pings but stalls on images (its
 * storage hung): every daemon call of the build is cut off by the caller's signal, so a server's
 * start is never held by it. No Docker needed.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Dockerode from "dockerode";
import { abortAfter } from "../core/abort.js";
import { buildWorkerImage } from "./docker-image.js";
import { inspectImage } from "./docker-pull.js";
import { startInProcessServer } from "../../test/fixtures/in-process-server.js";

describe("the worker image build against a daemon that stalls", () => {
  let dir: string;
  let socketPath: string;
  let daemon: http.Server;
  const stalls = new Set<string>();
  const seen: string[] = [];
  let openRequests = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "hodei-stalled-docker-"));
    socketPath = join(dir, "docker.sock");
    const runtimeDir = join(dir, "runtime");
    mkdirSync(runtimeDir);
    writeFileSync(join(runtimeDir, ".hash"), "a-runtime\n");
    daemon = http.createServer((req, res) => {
      const what = req.url!.includes("/images/create") ? "import" : req.url!.includes("/json") ? "inspect" : "other";
      seen.push(what);
      req.resume();
      if (stalls.has(what)) {
        // Never answered; counted until the client gives up and closes it.
        openRequests++;
        req.socket.once("close", () => openRequests--);
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: "No such image" }));
    });
    await new Promise<void>((resolve) => daemon.listen(socketPath, resolve));
  });

  after(async () => {
    daemon.closeAllConnections();
    await new Promise<void>((resolve) => daemon.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function buildWithin(ms: number): Promise<{ error: Error; elapsedMs: number }> {
    const limit = abortAfter(ms);
    const startedMs = Date.now();
    try {
      await buildWorkerImage(new Dockerode({ socketPath }), { tag: "hodei-worker:stall-test", runtimeDir: join(dir, "runtime"), signal: limit.signal });
      throw new Error("the build succeeded against a daemon that never answers");
    } catch (err) {
      return { error: err as Error, elapsedMs: Date.now() - startedMs };
    } finally {
      limit.dispose();
    }
  }

  async function closedRequests(): Promise<number> {
    for (let i = 0; i < 100 && openRequests > 0; i++) await new Promise((r) => setTimeout(r, 20));
    return openRequests;
  }

  it("gives up an image inspect that is never answered, and closes its request", async () => {
    stalls.clear();
    stalls.add("inspect");
    seen.length = 0;
    const { error, elapsedMs } = await buildWithin(300);
    assert.match(error.message, /inspect image hodei-worker:stall-test: .*aborted due to timeout/);
    assert.ok(elapsedMs < 5000, `it gave up in ${elapsedMs} ms`);
    assert.deepEqual(seen, ["inspect"]);
    assert.equal(await closedRequests(), 0, "the stalled request was closed");
  });

  it("gives up an import that is never answered, and closes its request", async () => {
    stalls.clear();
    stalls.add("import");
    seen.length = 0;
    const { error, elapsedMs } = await buildWithin(500);
    assert.match(error.message, /import hodei-worker:stall-test: .*aborted due to timeout/);
    assert.ok(elapsedMs < 5000, `it gave up in ${elapsedMs} ms`);
    assert.deepEqual(seen, ["inspect", "import"], "the missing image was imported");
    assert.equal(await closedRequests(), 0, "the stalled request was closed");
  });

  it("inspectImage: a missing image is a 404, and an aborted signal rejects before any request", async () => {
    stalls.clear();
    seen.length = 0;
    await assert.rejects(inspectImage(new Dockerode({ socketPath }), "nothing:here"), (err: { statusCode?: number }) => err.statusCode === 404);
    const aborted = new AbortController();
    aborted.abort(new Error("given up"));
    await assert.rejects(inspectImage(new Dockerode({ socketPath }), "nothing:here", aborted.signal), /given up/);
    assert.deepEqual(seen, ["inspect"]);
  });
});

describe("a server whose Docker daemon answers pings but stalls on images", () => {
  it("starts anyway once the image build's time limit has passed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-stalled-docker-"));
    const socketPath = join(dir, "docker.sock");
    const stalled: http.ServerResponse[] = [];
    const daemon = http.createServer((req, res) => {
      req.resume();
      if (req.url!.endsWith("/_ping")) return void res.end("OK");
      if (/\/containers\/json/.test(req.url!)) return void res.setHeader("content-type", "application/json").end("[]");
      if (req.url!.includes("/images/")) return void stalled.push(res); // never answered
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ message: "not in this test" }));
    });
    await new Promise<void>((resolve) => daemon.listen(socketPath, resolve));
    try {
      const startedMs = Date.now();
      const inProcess = await startInProcessServer({ imageBuildLimitMs: 500 }, { HODEI_PROVIDERS: "local,docker", HODEI_DOCKER_SOCKET: socketPath });
      const elapsedMs = Date.now() - startedMs;
      try {
        assert.ok(stalled.length >= 1, "the build asked the daemon about the image, which never answered");
        assert.ok(elapsedMs < 30_000, `the server started in ${elapsedMs} ms`);
        const { job } = await inProcess.client.submitJob({ command: ["true"], provider: "local" });
        assert.ok(job?.id, "the server serves");
      } finally {
        await inProcess.stop();
      }
    } finally {
      daemon.closeAllConnections();
      await new Promise<void>((resolve) => daemon.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
