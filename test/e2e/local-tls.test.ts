/**
 * TLS end to end on the local provider, with a throwaway CA (test/fixtures/tls.ts) and short edge
 * timeouts: a job through `hodei run --ca-cert` whose agent verifies the server with the CA the
 * server handed it, HTTPS and gRPC over TLS clients, ALPN routing, plain text refused, clients
 * without the CA refused with a clear message, and the handshake bounded by the sniff deadline.
 * Every test proves no worker process is left; stopping the server proves its idle agents went too.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type tls from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { after, afterEach, before, describe, it } from "node:test";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import { makeTestTls, type TestTls } from "../fixtures/tls.js";
import { bearer, eventually, type JobJson, leftoverProcesses, runCli, sendKey, type ServerProcess, startServerProcess, stopLeavingNothing } from "./harness.js";
import { http1Request, msUntilClosed, openSocket } from "./raw-wire.js";

const SNIFF_TIMEOUT_MS = 800;
const FAIL_AFTER_MS = 10_000;

/** An HTTPS request (what curl --cacert does), with the ALPN protocols the caller offers. */
function httpsRequest(url: string, options: { path: string; ca?: string; alpn?: string[]; body?: string; headers?: Record<string, string> }): Promise<{ status: number; body: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(options.path, url),
      { method: options.body === undefined ? "GET" : "POST", ca: options.ca, ALPNProtocols: options.alpn, agent: false, headers: { ...(options.body === undefined ? {} : { "content-type": "application/json" }), ...options.headers } } as https.RequestOptions,
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol ?? false }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("TLS on the local provider", () => {
  let material: TestTls;
  let server: ServerProcess;

  before(async () => {
    material = makeTestTls();
    server = await startServerProcess({
      HODEI_TLS_CERT: material.serverCertPath,
      HODEI_TLS_KEY: material.serverKeyPath,
      HODEI_TLS_CA: material.caCertPath,
      HODEI_SNIFF_TIMEOUT_MS: String(SNIFF_TIMEOUT_MS),
    });
  });
  afterEach(async () => {
    assert.deepEqual(await leftoverProcesses(server), []);
  });
  after(async () => {
    await stopLeavingNothing(server);
    material.cleanup();
  });

  it("logs an https:// URL and says workers verify with HODEI_TLS_CA", () => {
    assert.match(server.url, /^https:\/\//);
    const listening = JSON.parse(server.output.find((line) => line.includes('"server listening"'))!) as { url: string; tls: unknown };
    assert.match(listening.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(listening.tls, { workersVerifyWith: "HODEI_TLS_CA" });
  });

  it("runs a job through hodei run --ca-cert, its agent verifying the server with the CA it was handed", async () => {
    const result = await runCli(server, ["--ca-cert", material.caCertPath, "run", "--", "echo", "over tls"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "over tls\n");
    // HODEI_TLS_CA works for the CLI too; the job's own environment does not see the CA.
    const env = await runCli(server, ["run", "--", "env | grep -c HODEI_TLS || true"], { env: { HODEI_TLS_CA: material.caCertPath } });
    assert.equal(env.code, 0, env.stderr);
    assert.equal(env.stdout.trim(), "0");
  });

  it("serves HTTPS to a client that trusts the CA (Connect JSON and /healthz)", async () => {
    const health = await httpsRequest(server.url, { path: "/healthz", ca: material.caPem });
    assert.deepEqual([health.status, health.body], [200, "ok\n"]);
    const list = await httpsRequest(server.url, { path: "/hodei.v1.JobService/ListJobs", ca: material.caPem, body: "{}", headers: bearer(server) });
    assert.equal(list.status, 200, list.body);
    assert.ok(Array.isArray((JSON.parse(list.body) as { jobs?: unknown[] }).jobs ?? []));
  });

  it("serves gRPC over TLS to a client that trusts the CA", async () => {
    const client = createClient(JobService, createGrpcTransport({ baseUrl: server.url, nodeOptions: { ca: material.caPem }, interceptors: [sendKey(server)] }));
    const { job } = await client.submitJob({ command: ["echo", "grpc over tls"] });
    assert.ok(job);
    const chunks: Uint8Array[] = [];
    for await (const entry of client.getLogs({ jobId: job.id, follow: true })) chunks.push(entry.data);
    assert.equal(Buffer.concat(chunks).toString(), "grpc over tls\n");
    const ended = await eventually(async () => {
      const current = await client.getJob({ id: job.id });
      return current.timeline?.destroyed ? current : null;
    });
    assert.equal(ended?.exitCode, 0);
  });

  it("sends ALPN h2 to the HTTP/2 server and http/1.1 (or no ALPN) to the HTTP/1.1 server", async () => {
    const session = http2.connect(server.url, { ca: material.caPem });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        session.on("error", reject);
        const stream = session.request({ ":path": "/healthz" });
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.resume();
      });
      assert.equal(status, 200);
      assert.equal(session.alpnProtocol, "h2");
    } finally {
      session.close();
    }
    const h1 = await httpsRequest(server.url, { path: "/healthz", ca: material.caPem, alpn: ["http/1.1"] });
    assert.deepEqual([h1.status, h1.alpn], [200, "http/1.1"]);
    const none = await httpsRequest(server.url, { path: "/healthz", ca: material.caPem });
    assert.deepEqual([none.status, none.alpn], [200, false]);
  });

  it("refuses plain HTTP: a request gets a 400 saying the server speaks HTTPS, and the CLI prints it", async () => {
    const plainUrl = server.url.replace(/^https:/, "http:");
    const answer = await http1Request(plainUrl, { method: "GET", path: "/healthz" });
    assert.equal(answer.status, 400);
    assert.match(answer.body.toString(), /this server speaks HTTPS \(TLS\) only/);
    const cli = await runCli({ url: plainUrl }, ["jobs"]);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr, "hodei: this server speaks HTTPS (TLS) only: use an https:// URL\n");
  });

  it("fails a CLI without the CA, or with another CA, saying to pass the right one", async () => {
    for (const args of [["jobs"], ["--ca-cert", material.otherCaCertPath, "jobs"]]) {
      const cli = await runCli(server, args);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /^hodei: cannot verify the TLS certificate of the Hodei server at https:\/\/127\.0\.0\.1:\d+ \(unable to verify the first certificate\): pass the CA certificate that issued it with --ca-cert FILE or HODEI_TLS_CA\n$/);
    }
  });

  it("closes a connection that opens TCP and never finishes the handshake within the sniff timeout", async () => {
    const silent = await openSocket(server.port);
    const half = await openSocket(server.port);
    half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    try {
      const ms = await Promise.all([msUntilClosed(silent, FAIL_AFTER_MS, "silent socket"), msUntilClosed(half, FAIL_AFTER_MS, "half handshake")]);
      for (const m of ms) assert.ok(m >= SNIFF_TIMEOUT_MS - 100 && m < SNIFF_TIMEOUT_MS + 2000, `closed after ${m} ms`);
    } finally {
      silent.destroy();
      half.destroy();
    }
  });
});

describe("TLS without HODEI_TLS_CA on the server", () => {
  let material: TestTls;
  let server: ServerProcess;

  before(async () => {
    material = makeTestTls();
    server = await startServerProcess({
      HODEI_TLS_CERT: material.serverCertPath,
      HODEI_TLS_KEY: material.serverKeyPath,
      HODEI_REGISTRATION_TIMEOUT_MS: "3000",
      HODEI_LOCAL_WARM_WORKERS: "0",
    });
  });
  after(async () => {
    await stopLeavingNothing(server);
    material.cleanup();
  });

  it("fails the job of a worker that cannot verify the server (system roots only), with the reason", async () => {
    const env = { HODEI_TLS_CA: material.caCertPath };
    const id = (await runCli(server, ["run", "--detach", "--", "echo", "never"], { env })).stdout.trim();
    assert.match(id, /\S/);
    const job = await eventually(async () => {
      const j = JSON.parse((await runCli(server, ["jobs", "get", id, "--json"], { env })).stdout) as JobJson;
      return j.timeline.destroyed ? j : null;
    }, 30_000);
    assert.ok(job, "the job ended and its worker was destroyed");
    assert.equal(job.state, "failed");
    assert.match(job.reason, /unable to verify the first certificate/);
    assert.deepEqual(await leftoverProcesses(server), []);
  });
});

describe("TLS settings that cannot work", () => {
  it("stop the server at start-up with exit code 2 and the variable's name", async () => {
    const material = makeTestTls();
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    try {
      const missing = join(material.dir, "missing.crt");
      await assert.rejects(startServerProcess({ HODEI_TLS_CERT: missing, HODEI_TLS_KEY: material.serverKeyPath }, { dataDir }), (err: Error) => {
        assert.match(err.message, /server exited with 2 before listening/);
        assert.match(err.message, /hodei: invalid configuration: HODEI_TLS_CERT: cannot read .*missing\.crt/);
        return true;
      });
      await assert.rejects(startServerProcess({ HODEI_TLS_CERT: material.serverCertPath, HODEI_TLS_KEY: join(material.dir, "hodei-other-ca.key") }, { dataDir }), /exited with 2[\s\S]*do not make a TLS identity/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      material.cleanup();
    }
  });
});
