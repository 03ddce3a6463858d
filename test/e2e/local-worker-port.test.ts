/**
 * HODEI_WORKER_PORT on the local provider: the worker API on its own port (so a NetworkPolicy can
 * keep worker pods away from the client API), refused on the main port, and the client API and
 * plain HTTP refused on the worker port, each with a message naming the port to use. Jobs still run
 * end to end; the worker port keeps the main port's bounds and its TLS. Every test proves no worker
 * process is left; stopping the server proves its idle agents went too.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { after, afterEach, before, describe, it } from "node:test";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import { WorkerService } from "../../src/gen/hodei/v1/worker_pb.js";
import { makeTestTls, type TestTls } from "../fixtures/tls.js";
import { jsonCli, leftoverProcesses, runCli, type ServerProcess, startServerProcess, stopLeavingNothing } from "./harness.js";
import { http1Request, msUntilClosed, openSocket } from "./raw-wire.js";

const SNIFF_TIMEOUT_MS = 800;
const FAIL_AFTER_MS = 10_000;

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => assert.fail("the call was served"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.Unimplemented, err.message);
  return err;
}

describe("a separate worker port (HODEI_WORKER_PORT)", () => {
  let server: ServerProcess;
  let workerPortUrl: string;

  before(async () => {
    server = await startServerProcess({ HODEI_WORKER_PORT: "0", HODEI_SNIFF_TIMEOUT_MS: String(SNIFF_TIMEOUT_MS) });
    workerPortUrl = `http://127.0.0.1:${server.workerPort}`;
  });
  afterEach(async () => {
    assert.deepEqual(await leftoverProcesses(server), []);
  });
  after(() => stopLeavingNothing(server));

  it("runs a job end to end, its worker given the worker port", async () => {
    assert.notEqual(server.workerPort, server.port);
    const result = await runCli(server, ["run", "--", "echo", "split"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "split\n");
    const [local] = await jsonCli<{ workerServerUrl: string; workerServerUrlWarning: string }[]>(server, ["providers"]);
    assert.equal(local.workerServerUrl, workerPortUrl);
    assert.equal(local.workerServerUrlWarning, "");
  });

  it("serves WorkerService on the worker port and refuses it on the main port, naming HODEI_WORKER_PORT", async () => {
    await createClient(WorkerService, createGrpcTransport({ baseUrl: workerPortUrl })).ping({});
    const err = await refusal(createClient(WorkerService, createGrpcTransport({ baseUrl: server.url })).ping({}));
    assert.equal(err.rawMessage, `hodei.v1.WorkerService is served on the worker port (HODEI_WORKER_PORT, ${server.workerPort}), not on this one`);
    // Connect JSON too (what curl would send).
    const answer = await http1Request(server.url, { path: "/hodei.v1.WorkerService/Ping", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal((JSON.parse(answer.body.toString()) as { code: string }).code, "unimplemented");
  });

  it("refuses the client API and plain HTTP on the worker port, naming HODEI_PORT", async () => {
    const err = await refusal(createClient(JobService, createGrpcTransport({ baseUrl: workerPortUrl })).listJobs({}));
    assert.equal(err.rawMessage, `this is the worker port (HODEI_WORKER_PORT): hodei.v1.JobService is served on HODEI_PORT (${server.port})`);
    const cli = await runCli({ url: workerPortUrl }, ["jobs"]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /does not serve the Hodei API \(this is the worker port \(HODEI_WORKER_PORT\): hodei\.v1\.JobService is served on HODEI_PORT/);
    for (const path of ["/healthz", "/metrics", "/"]) {
      const answer = await http1Request(workerPortUrl, { method: "GET", path });
      assert.equal(answer.status, 404, path);
      assert.match(answer.body.toString(), /worker port \(HODEI_WORKER_PORT\).*on HODEI_PORT/);
    }
    assert.equal((await http1Request(server.url, { method: "GET", path: "/healthz" })).status, 200);
  });

  it("closes a connection that sends nothing on the worker port at the sniff deadline", async () => {
    const socket = await openSocket(server.workerPort);
    try {
      const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "silent socket on the worker port");
      assert.ok(ms >= SNIFF_TIMEOUT_MS - 100, `closed after ${ms} ms, before the deadline`);
    } finally {
      socket.destroy();
    }
  });
});

describe("the worker port with TLS", () => {
  let material: TestTls;
  let server: ServerProcess;

  before(async () => {
    material = makeTestTls();
    server = await startServerProcess({
      HODEI_WORKER_PORT: "0",
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

  it("runs a job whose agent reaches the worker port over TLS", async () => {
    const result = await runCli(server, ["--ca-cert", material.caCertPath, "run", "--", "echo", "split over tls"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "split over tls\n");
    const listening = JSON.parse(server.output.find((line) => line.includes('"server listening"'))!) as { workerPort: number };
    assert.equal(listening.workerPort, server.workerPort);
  });

  it("speaks TLS only on the worker port too: plain HTTP gets the 400, a half handshake is cut at the sniff deadline", async () => {
    await createClient(WorkerService, createGrpcTransport({ baseUrl: `https://127.0.0.1:${server.workerPort}`, nodeOptions: { ca: material.caPem } })).ping({});
    const answer = await http1Request(`http://127.0.0.1:${server.workerPort}`, { method: "GET", path: "/" });
    assert.equal(answer.status, 400);
    assert.match(answer.body.toString(), /this server speaks HTTPS/);
    const socket = await openSocket(server.workerPort);
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    try {
      const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "half handshake on the worker port");
      assert.ok(ms >= SNIFF_TIMEOUT_MS - 100, `closed after ${ms} ms, before the deadline`);
    } finally {
      socket.destroy();
    }
  });
});
