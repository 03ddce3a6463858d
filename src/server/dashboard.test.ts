/**
 * The dashboard's static files (dashboard.ts), in process over real HTTP: the app and its client-side
 * routes, content types, caching, gzip, and no way out of the directory whatever the encoding.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { type Dashboard, loadDashboard } from "./dashboard.js";

const SECRET = "the file outside the dashboard's directory";

async function serve(dashboard: Dashboard) {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (dashboard.serve(req, res, path)) return;
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"code":"not_found"}');
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A raw GET, so that the path is sent exactly as written (fetch would normalise ".."). */
function get(port: number, path: string, headers: Record<string, string> = {}, method = "GET") {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the dashboard's files", () => {
  let root: string;
  let port: number;
  let server: http.Server;
  const script = `console.log(${JSON.stringify("x".repeat(4000))});`;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "hodei-dashboard-"));
    const dir = join(root, "dist", "dashboard");
    mkdirSync(join(dir, "assets"), { recursive: true });
    writeFileSync(join(root, "package.json"), SECRET);
    writeFileSync(join(root, "dist", "secret.txt"), SECRET);
    writeFileSync(join(dir, "index.html"), "<!doctype html><title>Hodei</title>");
    writeFileSync(join(dir, "assets", "index-Ab12.js"), script);
    writeFileSync(join(dir, "assets", "index-Cd34.css"), "body{}");
    ({ server, port } = await serve(loadDashboard(dir)));
  });
  after(() => {
    server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("answers / and every client-side route with index.html, revalidated and under a strict CSP", async () => {
    for (const path of ["/", "/jobs", "/jobs/0b7e6c1a-1f2e-4c3d-9a8b-7c6d5e4f3a2b", "/workers", "/tokens", "/providers", "/schedules", "/submit", "/workers/", "/?state=running"]) {
      const res = await get(port, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers["content-type"], "text/html; charset=utf-8", path);
      assert.equal(res.headers["cache-control"], "no-cache", path);
      assert.match(String(res.headers["content-security-policy"]), /default-src 'self'/);
      assert.equal(res.headers["x-content-type-options"], "nosniff");
      assert.match(res.body.toString(), /<title>Hodei<\/title>/);
    }
  });

  it("serves hashed assets with their type, cached for a year, gzipped when asked", async () => {
    const js = await get(port, "/assets/index-Ab12.js");
    assert.equal(js.status, 200);
    assert.equal(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert.equal(js.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(js.body.toString(), script);
    const css = await get(port, "/assets/index-Cd34.css");
    assert.equal(css.headers["content-type"], "text/css; charset=utf-8");
    const gz = await get(port, "/assets/index-Ab12.js", { "accept-encoding": "gzip, br" });
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.equal(gunzipSync(gz.body).toString(), script);
    assert.ok(gz.body.length < script.length / 10, "compressed");
    const head = await get(port, "/assets/index-Ab12.js", {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers["content-length"]), script.length);
    assert.equal(head.body.length, 0);
  });

  it("never serves a file outside its directory, however the path is written", async () => {
    const attempts = [
      "/../package.json",
      "/../../package.json",
      "/%2e%2e/package.json",
      "/%2E%2E/%2E%2E/package.json",
      "/..%2fpackage.json",
      "/..%2F..%2Fpackage.json",
      "/%2e%2e%2fsecret.txt",
      "/assets/../../secret.txt",
      "/assets/..%2f..%2fsecret.txt",
      "/assets/%2e%2e/%2e%2e/secret.txt",
      "/..\\secret.txt",
      "/%5c..%5csecret.txt",
      "/%252e%252e/secret.txt",
      "/assets/index-Ab12.js%00.html",
      "/jobs/../../package.json",
      "//etc/passwd",
      "/etc/passwd",
    ];
    for (const path of attempts) {
      const res = await get(port, path);
      assert.notEqual(res.status, 200, path);
      assert.doesNotMatch(res.body.toString(), new RegExp(SECRET), path);
    }
  });

  it("leaves other paths and methods to the caller", async () => {
    assert.equal((await get(port, "/assets/missing.js")).status, 404);
    assert.equal((await get(port, "/nope")).status, 404);
    assert.equal((await get(port, "/healthz")).status, 404, "not the dashboard's: the server answers it");
    assert.equal((await get(port, "/", {}, "POST")).status, 404);
    assert.equal((await get(port, "/", {}, "DELETE")).status, 404);
  });

  it("says how to build it when it is not built", async () => {
    const empty = mkdtempSync(join(tmpdir(), "hodei-dashboard-none-"));
    const dashboard = loadDashboard(join(empty, "missing"));
    assert.equal(dashboard.isBuilt, false);
    const { server: bare, port: barePort } = await serve(dashboard);
    try {
      const res = await get(barePort, "/jobs");
      assert.equal(res.status, 503);
      assert.match(res.body.toString(), /npm run build/);
      assert.equal((await get(barePort, "/metrics")).status, 404);
    } finally {
      bare.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
