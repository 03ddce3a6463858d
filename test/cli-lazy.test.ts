/**
 * bin/load-cli.js hands the CLI bundle stand-ins for the built-in modules most commands never use
 * (HTTP, HTTP/2, TLS, child processes): a command that does not use them does not load them, one
 * that does gets the real module, and a build by another Node version loads them all as usual.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LAZY_FILE, standIn } from "../bin/load-cli.js";
import { HODEI_BIN, ROOT } from "./e2e/harness.js";

const LAZY_BUILTINS = ["http", "https", "http2", "tls", "child_process"];

/** Runs the CLI with args; returns its exit code, output and the LAZY_BUILTINS it had loaded when it exited. */
function runCli(bin: string, args: string[]): { status: number | null; stdout: string; stderr: string; loaded: string[] } {
  const report = "process.on('exit',()=>process.stderr.write('\\nLOADED '+JSON.stringify(process.moduleLoadList)))";
  const run = spawnSync(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(report)}`, bin, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HODEI_SERVER_URL: "http://127.0.0.1:9" },
    encoding: "utf8",
  });
  const [stderr, list] = run.stderr.split("\nLOADED ");
  const modules = JSON.parse(list ?? "[]") as string[];
  const loaded = LAZY_BUILTINS.filter((name) => modules.includes(`NativeModule ${name}`));
  return { status: run.status, stdout: run.stdout, stderr, loaded };
}

describe("the CLI's lazily loaded built-in modules", () => {
  it("are not loaded by `hodei --version`, and are by a command that makes a request", () => {
    const version = runCli(HODEI_BIN, ["--version"]);
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
    assert.deepEqual(version.loaded, []);

    // A request (to a port where nothing listens) loads node:http through its stand-in, and fails as usual.
    const jobs = runCli(HODEI_BIN, ["jobs"]);
    assert.equal(jobs.status, 1);
    assert.match(jobs.stderr, /cannot reach the Hodei server at http:\/\/127\.0\.0\.1:9/);
    assert.ok(jobs.loaded.includes("http"), `loaded: ${jobs.loaded}`);
  });

  it("are all loaded at once when dist/cli-lazy.json was written by another Node version", () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-cli-lazy-"));
    try {
      cpSync(join(ROOT, "bin"), join(dir, "bin"), { recursive: true });
      cpSync(join(ROOT, "dist"), join(dir, "dist"), { recursive: true, filter: (src) => !src.includes("dashboard") && !src.endsWith(".blob") });
      const recorded = JSON.parse(readFileSync(LAZY_FILE, "utf8")) as { node: string };
      writeFileSync(join(dir, "dist", "cli-lazy.json"), JSON.stringify({ ...recorded, node: "v0.0.0" }));
      const version = runCli(join(dir, "bin", "hodei.js"), ["--version"]);
      assert.equal(version.status, 0, version.stderr);
      assert.deepEqual(version.loaded, LAZY_BUILTINS);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("load their module at the first read of a property, not when their names are listed", () => {
    let loads = 0;
    const real = { connect: () => "connected", constants: { A: 1 } };
    const module = standIn(() => (loads++, real), Object.keys(real)) as typeof real;
    // What esbuild's interop does when the bundle loads: list the names, read each descriptor.
    assert.deepEqual(Object.getOwnPropertyNames(module), ["connect", "constants"]);
    assert.equal(Object.getOwnPropertyDescriptor(module, "connect")?.enumerable, true);
    assert.equal("connect" in module, true);
    assert.equal((module as { __esModule?: boolean }).__esModule, undefined);
    assert.equal(loads, 0);
    assert.equal(module.connect(), "connected");
    assert.equal(module.constants.A, 1);
    assert.equal(loads, 1);
  });
});
