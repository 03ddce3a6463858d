/**
 * What the built control plane (dist/server/, `npm run build`) loads, read from its files: the
 * Kubernetes client is bundled in (loading its files one by one from node_modules took a server with
 * that provider about 0.27 s more to start), in a chunk that only a dynamic import() reaches, so a
 * server without the Kubernetes provider never loads it.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";

const SERVER = resolve(import.meta.dirname, "../dist/server");
const SKIP = existsSync(join(SERVER, "main.js")) ? false : "dist/server is not built (npm run build)";

const files = () => readdirSync(SERVER).filter((name) => name.endsWith(".js"));
const text = (name: string) => readFileSync(join(SERVER, name), "utf8");
/** The client's KubeConfig class, as esbuild writes it (`var KubeConfig = class _KubeConfig {`). */
const holdsKubeConfig = (name: string) => /\bKubeConfig = class\b/.test(text(name));
/** The files of dist/server that `name` imports statically (import ... from "./x.js"), transitively. */
function staticClosure(name: string, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  for (const match of text(name).matchAll(/^(?:import|export)\b[^;]*?from\s+"\.\/([^"]+)"|^import\s+"\.\/([^"]+)"/gm)) staticClosure(match[1] ?? match[2], seen);
  return seen;
}

describe("the built control plane", { skip: SKIP }, () => {
  it("has the Kubernetes client bundled in: no file imports it from node_modules", () => {
    for (const name of files()) assert.doesNotMatch(text(name), /from\s+["']@kubernetes\/client-node["']|import\(\s*["']@kubernetes\/client-node["']\s*\)/, `${name} imports @kubernetes/client-node`);
    assert.ok(files().some(holdsKubeConfig), "a chunk holds the client's KubeConfig");
  });

  it("reaches the Kubernetes client only through a dynamic import", () => {
    const holders = files().filter(holdsKubeConfig);
    const loadedAtStart = staticClosure("main.js");
    assert.ok(loadedAtStart.size > 1, "main.js imports chunks statically (the check can fail)");
    for (const holder of holders) assert.ok(!loadedAtStart.has(holder), `${holder} (the Kubernetes client) is loaded by every start`);
  });
});
