/**
 * The warm pool's watch on an idle container (DockerProvider.waitExit) against a fake daemon that
 * answers a wait as dockerd does for a running container: its headers at once, its body never. Each
 * wait is renewed on its own timer, so the watch goes on for as long as the container idles, and
 * sees its end. No Docker needed.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import Dockerode from "dockerode";
import { DockerProvider } from "./docker.js";

describe("DockerProvider: watching an idle container", () => {
  it("renews a wait whose answer never comes, and resolves once the container no longer runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-fake-docker-"));
    const socketPath = join(dir, "docker.sock");
    let waits = 0;
    let isRunning = true;
    const daemon = http.createServer((req, res) => {
      if (req.url?.includes("/wait")) {
        waits++;
        res.writeHead(200, { "content-type": "application/json" });
        res.flushHeaders(); // the body would come at the container's exit
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ State: { Running: isRunning } }));
    });
    await new Promise<void>((resolve) => daemon.listen(socketPath, resolve));
    const provider = new DockerProvider({
      clusterId: "c",
      socketPath,
      defaultImage: "x",
      networkMode: "host",
      runtimeDir: dir,
      agentEnv: {},
      log: { warn() {} },
      waitRenewMs: 200,
      docker: new Dockerode({ socketPath, timeout: 120_000 }),
    });
    const watch = new AbortController();
    try {
      // waitExit is what the warm pool watches each idle container with.
      const exited = (provider as unknown as { waitExit(id: string, signal: AbortSignal): Promise<void> }).waitExit("idle", watch.signal);
      let state = "waiting";
      void exited.then(() => (state = "exited"), (err: Error) => (state = `failed: ${err.message}`));
      for (let i = 0; i < 250 && waits < 3; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(waits >= 3, `the wait was renewed (${waits} waits)`);
      assert.equal(state, "waiting", "it runs on while the container runs");
      isRunning = false;
      for (let i = 0; i < 250 && state === "waiting"; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(state, "exited");
    } finally {
      watch.abort();
      daemon.closeAllConnections();
      await new Promise<void>((resolve) => daemon.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
