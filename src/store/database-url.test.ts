/**
 * A server on SQLite never loads the PostgreSQL driver (40 to 90 ms of a start): store/database.ts
 * loads store/postgres.ts, and so `pg`, only to open a postgres:// URL. Checked in a process of its
 * own, whose CommonJS module cache (where `pg` lands, ESM-imported or not) is read at the end.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { isPostgresUrl } from "./database-url.js";

/** Runs `body` (ES module code) after opening an in-memory SQLite database; returns whether `pg` was loaded. */
function pgLoadedAfter(body: string): boolean {
  const script = `
    const { openDatabase } = await import(${JSON.stringify(new URL("./database.ts", import.meta.url).href)});
    const opened = await openDatabase("sqlite::memory:");
    await opened.db.destroy();
    ${body}
    const { createRequire } = await import("node:module");
    const cache = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(String(cache.some((path) => path.includes("/node_modules/pg/"))));`;
  const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout === "true";
}

describe("the PostgreSQL driver", () => {
  it("is not loaded by a SQLite database", () => {
    assert.equal(pgLoadedAfter(""), false);
  });

  it("is loaded with store/postgres.ts (the check above can fail)", () => {
    assert.equal(pgLoadedAfter(`await import(${JSON.stringify(new URL("./postgres.ts", import.meta.url).href)});`), true);
  });

  it("is chosen by the URL's scheme", () => {
    assert.equal(isPostgresUrl("postgres://u@127.0.0.1:5432/db"), true);
    assert.equal(isPostgresUrl("postgresql://u@127.0.0.1/db"), true);
    assert.equal(isPostgresUrl("sqlite:.hodei/hodei.db"), false);
  });
});
