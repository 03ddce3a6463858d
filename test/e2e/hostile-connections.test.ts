/**
 * Connections that hold the port doing nothing, against a real server process: each is opened on
 * loopback, left silent or half-sent, and must be closed by the server (waited for on the socket's
 * or session's "close" event; the timers here only bound a failing test). Quiet log followers, on
 * HTTP/1.1 and HTTP/2, must not be cut by the same timeouts.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { after, afterEach, before, describe, it } from "node:test";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import { eventually, leftoverProcesses, runCli, type ServerProcess, sendKey, startServerProcess, stopLeavingNothing } from "./harness.js";
import { http1Request, msUntilClosed, openSocket } from "./raw-wire.js";

const SHORT = {
  HODEI_SNIFF_TIMEOUT_MS: 800,
  HODEI_HEADERS_TIMEOUT_MS: 800,
  HODEI_REQUEST_TIMEOUT_MS: 1500,
  HODEI_KEEP_ALIVE_TIMEOUT_MS: 800,
  HODEI_HTTP2_IDLE_TIMEOUT_MS: 1000,
};
/** A failing test ends after this; passing ones close in about the configured timeout. */
const FAIL_AFTER_MS = 10_000;

describe("connections that do nothing, with short configured timeouts", () => {
  let server: ServerProcess;
  const opened: { destroy(): void }[] = [];
  const open = async (): Promise<net.Socket> => {
    const socket = await openSocket(server.port);
    opened.push(socket);
    return socket;
  };
  const connectH2 = (): http2.ClientHttp2Session => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    opened.push(session);
    return session;
  };

  before(async () => {
    server = await startServerProcess({ ...Object.fromEntries(Object.entries(SHORT).map(([k, v]) => [k, String(v)])), HODEI_LOG_LEVEL: "debug" });
  });
  afterEach(() => {
    for (const o of opened.splice(0)) o.destroy();
  });
  after(() => stopLeavingNothing(server));

  it("closes a socket that sends nothing once the sniff deadline passes", async () => {
    const ms = await msUntilClosed(await open(), FAIL_AFTER_MS, "silent socket");
    assert.ok(ms >= SHORT.HODEI_SNIFF_TIMEOUT_MS - 100, `closed after ${ms} ms, before the deadline`);
  });

  it("closes a socket that sends half the HTTP/2 preface", async () => {
    const socket = await open();
    socket.write("PRI * HTTP");
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "half preface");
    assert.ok(ms >= SHORT.HODEI_SNIFF_TIMEOUT_MS - 100, `closed after ${ms} ms`);
  });

  it("closes a socket that trickles the preface a byte at a time (the sniff deadline is absolute)", async () => {
    const socket = await open();
    const preface = "PRI * HTTP/2.0";
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < preface.length - 1 && !socket.destroyed) socket.write(preface[sent++]);
    }, 100);
    try {
      await msUntilClosed(socket, FAIL_AFTER_MS, "trickled preface");
    } finally {
      clearInterval(trickle);
    }
  });

  it("closes an HTTP/2 connection that sent more than the sniffed preface but never a stream", async () => {
    const socket = await open();
    socket.write("PRI * HTTP/2.0\r\n\r\nSM");
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "preface without settings");
    assert.ok(ms >= SHORT.HODEI_HTTP2_IDLE_TIMEOUT_MS - 100, `closed after ${ms} ms`);
  });

  it("closes partial HTTP/1.1 headers after the headers timeout", async () => {
    const socket = await open();
    const answer: Buffer[] = [];
    socket.on("data", (c: Buffer) => answer.push(c));
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "partial headers");
    assert.ok(ms >= SHORT.HODEI_HEADERS_TIMEOUT_MS - 100, `closed after ${ms} ms`);
    assert.match(Buffer.concat(answer).toString(), /^HTTP\/1\.1 408/);
  });

  it("closes an HTTP/1.1 request whose body never completes after the request timeout", async () => {
    const socket = await open();
    socket.write('POST /hodei.v1.JobService/SubmitJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"comm');
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "unfinished body");
    assert.ok(ms >= SHORT.HODEI_REQUEST_TIMEOUT_MS - 100, `closed after ${ms} ms`);
  });

  it("closes an idle HTTP/1.1 keep-alive connection after the keep-alive timeout", async () => {
    const socket = await open();
    const answered = new Promise<void>((resolve) => socket.once("data", () => resolve()));
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await answered;
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "idle keep-alive");
    assert.ok(ms >= SHORT.HODEI_KEEP_ALIVE_TIMEOUT_MS - 100, `closed after ${ms} ms`);
  });

  it("closes an HTTP/2 session that opens no stream after the idle timeout", async () => {
    const session = connectH2();
    const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
    const ms = await msUntilClosed(session, FAIL_AFTER_MS, "idle session");
    await goaway;
    assert.ok(ms >= SHORT.HODEI_HTTP2_IDLE_TIMEOUT_MS - 100, `closed after ${ms} ms`);
  });

  it("resets an HTTP/2 unary stream whose request body never completes, then closes the idle session", async () => {
    const session = connectH2();
    const stream = session.request({ ":method": "POST", ":path": "/hodei.v1.JobService/GetJob", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    stream.write(Buffer.from([0, 0, 0]));
    const ms = await msUntilClosed(stream, FAIL_AFTER_MS, "unfinished stream");
    assert.ok(ms >= SHORT.HODEI_REQUEST_TIMEOUT_MS - 100, `closed after ${ms} ms`);
    assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL);
    await msUntilClosed(session, FAIL_AFTER_MS, "session after its stream was reset");
  });

  it("keeps an HTTP/2 session with an open stream past the idle timeout", async () => {
    // The stream stays open until the request timeout (longer than the idle timeout) resets it; the
    // idle clock starts only once it has closed.
    const session = connectH2();
    let closedAt = 0;
    session.once("close", () => (closedAt = Date.now()));
    const stream = session.request({ ":method": "POST", ":path": "/hodei.v1.JobService/GetJob", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    const streamClosed = msUntilClosed(stream, FAIL_AFTER_MS, "stream");
    stream.write(Buffer.from([0, 0, 0]));
    const ms = await streamClosed;
    assert.ok(ms > SHORT.HODEI_HTTP2_IDLE_TIMEOUT_MS, "the stream outlived the idle timeout");
    assert.equal(closedAt, 0, "the session was not closed while its stream was open");
  });
});

describe("quiet log followers, with short configured timeouts", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess({ ...Object.fromEntries(Object.entries(SHORT).map(([k, v]) => [k, String(v)])), HODEI_LOG_LEVEL: "debug" });
  });
  after(() => stopLeavingNothing(server));

  it("are not cut while a job prints nothing for longer than every timeout, and get its final output", async () => {
    const id = (await runCli(server, ["run", "--detach", "--", "sleep 4; echo done"])).stdout.trim();
    assert.match(id, /\S/);
    const overHttp1 = runCli(server, ["logs", "-f", id]);
    const overHttp2 = (async () => {
      const client = createClient(JobService, createGrpcTransport({ baseUrl: server.url, interceptors: [sendKey(server)] }));
      const data: Uint8Array[] = [];
      for await (const entry of client.getLogs({ jobId: id, follow: true })) data.push(entry.data);
      return Buffer.concat(data).toString();
    })();
    const [cli, grpc] = await Promise.all([overHttp1, overHttp2]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, "done\n");
    assert.doesNotMatch(cli.stderr, /log stream lost/, "the HTTP/1.1 follow was never resumed");
    assert.equal(grpc, "done\n");
    // The agent's worker stream (bidi) lived through it too: no deadline was applied to it.
    const cut = server.output.filter((line) => line.includes("http2 deadline passed") && line.includes("WorkerService"));
    assert.deepEqual(cut, []);
    const job = await runCli(server, ["jobs", "get", id, "--json"]);
    assert.equal((JSON.parse(job.stdout) as { state: string }).state, "succeeded");
    assert.deepEqual(await leftoverProcesses(server), []);
  });
});

describe("connection cap", () => {
  let server: ServerProcess;
  const sockets: net.Socket[] = [];

  before(async () => {
    server = await startServerProcess({ HODEI_MAX_CONNECTIONS: "4", HODEI_LOCAL_WARM_WORKERS: "0" });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await stopLeavingNothing(server);
  });

  it("closes connections beyond HODEI_MAX_CONNECTIONS at once, and serves again when some close", async () => {
    for (let i = 0; i < 4; i++) sockets.push(await openSocket(server.port));
    const fifth = await openSocket(server.port);
    await msUntilClosed(fifth, FAIL_AFTER_MS, "connection over the cap");
    assert.ok(
      sockets.every((s) => !s.destroyed && !s.readableEnded),
      "the four within the cap are still open",
    );
    for (const s of sockets.splice(0)) s.destroy();
    const ok = await eventually(async () => (await http1Request(server.url, { method: "GET", path: "/healthz" }).catch(() => ({ status: 0 }))).status === 200);
    assert.ok(ok, "served again once connections closed");
  });
});

describe("connections that do nothing, with the default configuration", () => {
  let server: ServerProcess;
  const opened: { destroy(): void }[] = [];

  before(async () => {
    server = await startServerProcess({ HODEI_LOCAL_WARM_WORKERS: "0" });
  });
  after(async () => {
    for (const o of opened) o.destroy();
    await stopLeavingNothing(server);
  });

  it("closes each within 30 s: silent, partial headers, unfinished body, HTTP/2 without streams", async () => {
    const silent = await openSocket(server.port);
    const partial = await openSocket(server.port);
    partial.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    const body = await openSocket(server.port);
    body.write('POST /hodei.v1.JobService/SubmitJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"comm');
    const session = http2.connect(server.url);
    session.on("error", () => {});
    opened.push(silent, partial, body, session);
    const ms = await Promise.all([
      msUntilClosed(silent, 30_000, "silent socket"),
      msUntilClosed(partial, 30_000, "partial headers"),
      msUntilClosed(body, 30_000, "unfinished body"),
      msUntilClosed(session, 30_000, "HTTP/2 session without streams"),
    ]);
    console.log(`default configuration, closed after (ms): silent ${ms[0]}, partial headers ${ms[1]}, unfinished body ${ms[2]}, idle HTTP/2 ${ms[3]}`);
  });
});
