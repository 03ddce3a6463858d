/**
 * An agent whose log cannot be written (its stderr on a full disk: /dev/full) goes on: its log is
 * diagnostics, never a reason to end the agent and its job.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "./e2e/harness.js";

describe("the agent's log", () => {
  it("a failed write to it (ENOSPC) does not end the agent", async () => {
    // A control plane that drops every connection: the idle agent's first ping fails, and it logs that.
    const dropped: net.Socket[] = [];
    const refusing = net.createServer((socket) => {
      dropped.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
    const { port } = refusing.address() as net.AddressInfo;
    const full = openSync("/dev/full", "w");
    try {
      const agent = spawn(process.execPath, [join(ROOT, "dist", "agent.cjs")], {
        stdio: ["pipe", "ignore", full],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HODEI_SERVER_URL: `http://127.0.0.1:${port}` },
      });
      const exited = new Promise<number | null>((resolve) => agent.once("exit", (code) => resolve(code)));
      await new Promise<void>((resolve) => refusing.once("connection", () => resolve()));
      // The failed ping's log line is written moments after the drop; without the agent's guard the
      // write's ENOSPC ends it with code 1 here.
      const early = await Promise.race([exited, new Promise<"running">((resolve) => setTimeout(() => resolve("running"), 1000))]);
      assert.equal(early, "running", "the agent still waits for its assignment");
      agent.stdin?.end(); // released while idle: it exits 0
      assert.equal(await exited, 0);
    } finally {
      closeSync(full);
      await new Promise<void>((resolve) => refusing.close(() => resolve()));
    }
  });
});
