/**
 * The import rules of docs/architecture.md, checked mechanically:
 *   core <- store, providers <- scheduler <- server;  agent uses only core and gen;
 *   cli uses only gen, checks, its own files and config.ts (plus the lazy imports that start a
 *   server and build the Docker worker image); checks (doctor and verify over the API) only gen;
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
  config: ["core", "tracing-config"],
  scheduler: ["core", "store", "providers", "scheduler", "metrics", "tracing-config"],
  server: ["core", "store", "providers", "scheduler", "server", "gen", "metrics", "config"],
  agent: ["core", "gen", "agent"],
  cli: ["cli", "gen", "config", "checks"],
  // doctor and verify over the API, shared by the CLI and the dashboard: only the generated client.
  checks: ["checks", "gen"],
};

/** What the CLI may import lazily (import()) beyond its own area. */
const LAZY_CLI_IMPORTS = ["server/main.js", "providers/docker-image.js"];

describe("import rules", () => {
  for (const file of sourceFiles(SRC)) {
    const area = areaOf(file);
    it(`${relative(SRC, file)} imports only what ${area} may use`, () => {
      assert.ok(ALLOWED[area], `no rule for area "${area}": add one to test/architecture.test.ts`);
      for (const imp of importsOf(file)) {
        // The CLI starts the server and builds the worker image through lazy imports, so client
        // commands never load them (nor dockerode).
        if (area === "cli" && imp.isDynamic && LAZY_CLI_IMPORTS.some((spec) => imp.spec.endsWith(spec))) continue;
        if (imp.spec.endsWith("/package.json")) continue; // the version string
        assert.ok(ALLOWED[area].includes(imp.area), `${relative(SRC, file)} imports ${imp.spec} (${imp.area})`);
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
