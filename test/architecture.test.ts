/**
 * The import rules of docs/architecture.md, checked mechanically:
 *   core <- store, providers <- scheduler <- server;  agent uses only core and gen;
 *   client (hodei/client) only gen and core's pure helpers; cli uses only client, gen, checks, its
 *   own files and client-config.ts (plus the lazy imports that start a server, build the Docker
 *   worker image and read config.ts); checks (doctor and verify over the API) only gen;
 *   the dashboard only gen, checks and its own files.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

const SRC = resolve(import.meta.dirname, "../src");

/** Top-level area of a file under src/ ("core", "store", ..., or the file name for src/*.ts). */
function areaOf(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes("/") ? rel.split("/")[0] : rel.replace(/\.ts$/, "");
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".contract.ts") ? [path] : [];
  });
}

/** Relative imports of a file, resolved to areas, with whether each is a dynamic import(). */
function importsOf(file: string): { area: string; spec: string; isDynamic: boolean }[] {
  const text = readFileSync(file, "utf8");
  const found: { area: string; spec: string; isDynamic: boolean }[] = [];
  for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.[^"']+)["']/g)) {
    const target = resolve(dirname(file), match[1].replace(/\.js$/, ".ts"));
    found.push({ area: areaOf(target), spec: match[1], isDynamic: match[0].startsWith("import") });
  }
  return found;
}

const ALLOWED: Record<string, string[]> = {
  core: ["core"],
  gen: ["gen"],
  store: ["core", "store"],
  providers: ["core", "providers"],
  metrics: [],
  // The OTEL_* settings, parsed from the env config.ts hands over; the scheduler's job traces take them.
  "tracing-config": [],
  // core is pure: config checks HODEI_K8S_NODE_SELECTOR / TOLERATIONS with the rules jobs are checked with.
  config: ["core", "client-config", "tracing-config"],
  // The CLI's settings (server URL, key, CA file): loaded on every CLI start, so only core's pure helpers.
  "client-config": ["core"],
  // hodei/client, the typed client of the API for Node programs (and the CLI's).
  client: ["client", "gen", "core"],
  scheduler: ["core", "store", "providers", "scheduler", "metrics", "tracing-config"],
  server: ["core", "store", "providers", "scheduler", "server", "gen", "metrics", "config"],
  agent: ["core", "gen", "agent"],
  cli: ["cli", "client", "gen", "client-config", "checks"],
  // doctor and verify over the API, shared by the CLI and the dashboard: only the generated client.
  checks: ["checks", "gen"],
};

/** What the CLI may import lazily (import()) beyond its own area. */
const LAZY_CLI_IMPORTS = ["server/main.js", "providers/docker-image.js", "../config.js"];

describe("import rules", () => {
  for (const file of sourceFiles(SRC)) {
    const area = areaOf(file);
    it(`${relative(SRC, file)} imports only what ${area} may use`, () => {
      assert.ok(ALLOWED[area], `no rule for area "${area}": add one to test/architecture.test.ts`);
      for (const imp of importsOf(file)) {
        // The CLI starts the server, builds the worker image and reads config.ts (zod) through lazy
        // imports, so client commands never load them (nor dockerode).
        if (area === "cli" && imp.isDynamic && LAZY_CLI_IMPORTS.some((spec) => imp.spec.endsWith(spec))) continue;
        if (imp.spec.endsWith("/package.json")) continue; // the version string
        assert.ok(ALLOWED[area].includes(imp.area), `${relative(SRC, file)} imports ${imp.spec} (${imp.area})`);
      }
    });
  }
});

describe("hodei/client's packages", () => {
  // What a program that imports hodei/client loads: the Connect client and protobuf runtime only.
  const PACKAGES = /^(node:|@connectrpc\/connect(-node)?$|@bufbuild\/protobuf(\/wkt)?$)/;
  for (const file of sourceFiles(join(SRC, "client"))) {
    it(`${relative(SRC, file)} imports only Node's modules, Connect and protobuf`, () => {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/^(?:import|export)\b[^;]*?from\s+["']([^."'][^"']*)["']|import\s*\(\s*["']([^."'][^"']*)["']/gm)) {
        const spec = match[1] ?? match[2];
        assert.match(spec, PACKAGES, `${relative(SRC, file)} imports ${spec}`);
      }
    });
  }
});

describe("the dashboard's imports", () => {
  const DASHBOARD = resolve(import.meta.dirname, "../dashboard/src");
  const files = readdirSync(DASHBOARD, { recursive: true })
    .map(String)
    .filter((name) => /\.tsx?$/.test(name))
    .map((name) => join(DASHBOARD, name));
  it("uses only the generated API client, the shared checks and its own files", () => {
    assert.ok(files.length > 0);
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.[^"']+)["']/g)) {
        const target = resolve(dirname(file), match[1]);
        const isOwn = target.startsWith(DASHBOARD + "/");
        const isGen = target.startsWith(join(SRC, "gen") + "/") || target.startsWith(join(SRC, "checks") + "/");
        assert.ok(isOwn || isGen, `dashboard/src/${relative(DASHBOARD, file)} imports ${match[1]}`);
      }
    }
  });
});

describe("who reads the environment", () => {
  // The settings' one reader per program: the control plane's (config.ts, handing the OTEL_* ones to
  // tracing-config.ts), the CLI's (client-config.ts) and the agent's (agent/config.ts, from main.ts).
  const READERS = new Set(["config.ts", "client-config.ts", "agent/config.ts", "agent/main.ts"]);
  it("only the configuration modules read process.env (a comment may name it)", () => {
    const readers = sourceFiles(SRC)
      .filter((file) => readFileSync(file, "utf8").split("\n").some((line) => /process\.env\b/.test(line) && !/^\s*(\*|\/\/)/.test(line)))
      .map((file) => relative(SRC, file));
    assert.ok(readers.includes("config.ts"), "the check finds config.ts, which reads it");
    assert.deepEqual(readers.filter((file) => !READERS.has(file)), []);
  });
});
