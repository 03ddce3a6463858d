/**
 * `hodei server` when something around it must be fixed first: the port is taken, the SQLite path
 * is a directory or not a database, PostgreSQL does not listen. Each stops the server at start
 * with exit code 1 and one line that names the setting to change, without a stack trace; no
 * worker is started. The listener's and the store's explanations are checked in process too.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { StartupError } from "../../src/core/errors.js";
import { explainListenError } from "../../src/server/listener.js";
import { openDatabase } from "../../src/store/database.js";
import { anyClusterProcesses, startServerProcess } from "./harness.js";

/** A port something listens on (a plain TCP server of this test). */
async function takenPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** What a server that must not start said, as startServerProcess reports it; it left no process of its cluster. */
async function startFailure(env: Record<string, string>, dataDir: string): Promise<string> {
  let message = "";
  const clusterId = `tstart${randomUUID().slice(0, 8)}`;
  await assert.rejects(startServerProcess(env, { dataDir, clusterId }), (err: Error) => {
    message = err.message;
    return true;
  });
  assert.deepEqual(await anyClusterProcesses(clusterId), [], "no worker or agent was left");
  return message;
}

describe("hodei server: what stops it at start", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hodei-start-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("a port in use: exit 1, one line naming HODEI_PORT, no stack trace", async () => {
    const taken = await takenPort();
    try {
      const dataDir = join(dir, "port");
      const message = await startFailure({ HODEI_PORT: String(taken.port) }, dataDir);
      assert.match(message, /server exited with 1 before listening/);
      assert.match(message, new RegExp(`hodei: cannot listen on 127\\.0\\.0\\.1:${taken.port}: the port is in use .*set HODEI_PORT to a free port`));
      assert.doesNotMatch(message, /\n\s+at /, "no stack trace");
      assert.doesNotMatch(message, /unexpected error/);
    } finally {
      await taken.close();
    }
  });

  it("a SQLite path that is a directory, or a file that is not a database: exit 1, naming the path", async () => {
    const asDirectory = join(dir, "db-dir");
    mkdirSync(join(asDirectory, "hodei.db"), { recursive: true });
    const message = await startFailure({ HODEI_DATABASE_URL: `sqlite:${join(asDirectory, "hodei.db")}` }, asDirectory);
    assert.match(message, /server exited with 1 before listening/);
    assert.match(message, /hodei: cannot use the database sqlite:.*db-dir\/hodei\.db: it cannot be opened for writing here .*fix HODEI_DATABASE_URL or HODEI_DATA_DIR/);
    assert.doesNotMatch(message, /\n\s+at /, "no stack trace");

    const notDb = join(dir, "not-a-db");
    mkdirSync(notDb);
    writeFileSync(join(notDb, "hodei.db"), "these are notes, not a database\n".repeat(200));
    const second = await startFailure({}, notDb);
    assert.match(second, /hodei: cannot use the database sqlite:.*not-a-db\/hodei\.db: the file is not a SQLite database/);
    assert.doesNotMatch(second, /\n\s+at /, "no stack trace");
  });

  it("PostgreSQL that does not listen: exit 1, what to check, the password redacted", async () => {
    const closed = await takenPort();
    await closed.close(); // now nothing listens there
    const message = await startFailure({ HODEI_DATABASE_URL: `postgres://hodei:s3cret@127.0.0.1:${closed.port}/hodei` }, join(dir, "pg"));
    assert.match(message, /server exited with 1 before listening/);
    assert.match(message, /hodei: cannot use the database postgres:\/\/hodei:\*+@127\.0\.0\.1:\d+\/hodei: nothing listens there/);
    assert.doesNotMatch(message, /s3cret/);
    assert.doesNotMatch(message, /\n\s+at /, "no stack trace");
  });
});

describe("start-up explanations in process", () => {
  it("the listener names the variable of its port, and leaves other errors as they are", () => {
    const inUse = Object.assign(new Error("listen EADDRINUSE"), { code: "EADDRINUSE" });
    const main = explainListenError(inUse, { port: 7070, host: "::1", name: "main" });
    assert.ok(main instanceof StartupError);
    assert.match(main.message, /^cannot listen on \[::1\]:7070: the port is in use .*HODEI_PORT/);
    assert.match(explainListenError(inUse, { port: 7071, host: "127.0.0.1", name: "worker" }).message, /HODEI_WORKER_PORT/);
    const denied = Object.assign(new Error("listen EACCES"), { code: "EACCES" });
    assert.match(explainListenError(denied, { port: 80, host: "0.0.0.0", name: "main" }).message, /permission denied .*above 1023/);
    const other = Object.assign(new Error("listen EMFILE"), { code: "EMFILE" });
    assert.equal(explainListenError(other, { port: 1, host: "127.0.0.1", name: "main" }), other);
  });

  it("openDatabase says which SQLite file cannot be used, and keeps the cause", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-start-db-"));
    try {
      mkdirSync(join(dir, "x.db"));
      await assert.rejects(openDatabase(`sqlite:${join(dir, "x.db")}`), (err: Error) => {
        assert.ok(err instanceof StartupError);
        assert.ok(err.cause, "the SQLite error is kept as cause");
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
