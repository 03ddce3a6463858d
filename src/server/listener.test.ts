/**
 * The listener in process, with TLS and short configured timeouts: ALPN routing both ways, plain
 * text refused on a TLS port, the handshake bounded by the sniff deadline, and the HTTP/1.1 and
 * HTTP/2 bounds kept over TLS. Closing is waited for on "close" events; the timers only bound a
 * failing test. Plain (h2c) routing is checked too, since it shares the code.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { once } from "node:events";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { after, afterEach, before, describe, it } from "node:test";
import pino from "pino";
import { msUntilClosed, openSocket } from "../../test/e2e/raw-wire.js";
import { makeTestTls, type TestTls } from "../../test/fixtures/tls.js";
import { type Listener, type ListenerLimits, listen } from "./listener.js";

const LIMITS: ListenerLimits = {
  sniffTimeoutMs: 600,
  headersTimeoutMs: 600,
  requestTimeoutMs: 1200,
  keepAliveTimeoutMs: 600,
  http2IdleTimeoutMs: 800,
  http2MaxConcurrentStreams: 10,
  maxConnections: 100,
  longLivedPaths: [],
};
const FAIL_AFTER_MS = 8000;
const log = pino({ level: "silent" });

/** Answers with the HTTP version the request arrived on. */
function versionHandler(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  (res as http.ServerResponse).end(`${req.httpVersion} ${(req.socket as tls.TLSSocket).encrypted === true ? "tls" : "plain"}`);
}

function http1Get(options: https.RequestOptions & { isTls: boolean; ALPNProtocols?: string[] }): Promise<{ status: number; body: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const { isTls, ...rest } = options;
    const req = (isTls ? https : http).request({ method: "GET", path: "/", agent: false, ...rest }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol ?? null }));
    });
    req.on("error", reject);
    req.end();
  });
}

function http2Get(url: string, options: http2.SecureClientSessionOptions): Promise<{ body: string; alpn: string | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, options);
    session.on("error", reject);
    const stream = session.request({ ":path": "/" });
    let body = "";
    stream.on("data", (c: Buffer) => (body += c));
    stream.on("error", reject);
    stream.on("end", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ body, alpn });
    });
  });
}

describe("listener with TLS", () => {
  let material: TestTls;
  let listener: Listener;
  const opened: { destroy(): void }[] = [];

  before(async () => {
    material = makeTestTls();
    listener = await listen(versionHandler, { port: 0, host: "127.0.0.1", limits: LIMITS, log, tls: { cert: material.serverCertPem, key: material.serverKeyPem }, name: "main" });
  });
  afterEach(() => {
    for (const o of opened.splice(0)) o.destroy();
  });
  after(async () => {
    await listener.close();
    material.cleanup();
  });

  it("sends ALPN h2 to the HTTP/2 server", async () => {
    const { body, alpn } = await http2Get(`https://localhost:${listener.port}`, { ca: material.caPem });
    assert.equal(alpn, "h2");
    assert.equal(body, "2.0 tls");
  });

  it("sends ALPN http/1.1 to the HTTP/1.1 server", async () => {
    const answer = await http1Get({ isTls: true, host: "127.0.0.1", port: listener.port, ca: material.caPem, ALPNProtocols: ["http/1.1"] });
    assert.equal(answer.alpn, "http/1.1");
    assert.deepEqual([answer.status, answer.body], [200, "1.1 tls"]);
  });

  it("sends a TLS client that offers no ALPN to the HTTP/1.1 server", async () => {
    const answer = await http1Get({ isTls: true, host: "127.0.0.1", port: listener.port, ca: material.caPem });
    assert.equal(answer.alpn, false);
    assert.deepEqual([answer.status, answer.body], [200, "1.1 tls"]);
  });

  it("is refused by a client that does not trust the issuing CA", async () => {
    await assert.rejects(
      http1Get({ isTls: true, host: "127.0.0.1", port: listener.port, ca: material.otherCaPem }),
      (err: NodeJS.ErrnoException) => err.code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    );
  });

  it("answers a plain-text HTTP/1.1 request with 400 saying the server speaks HTTPS, then closes", async () => {
    const answer = await http1Get({ isTls: false, host: "127.0.0.1", port: listener.port });
    assert.equal(answer.status, 400);
    assert.deepEqual(JSON.parse(answer.body), { code: "failed_precondition", message: "this server speaks HTTPS (TLS) only: use an https:// URL" });
  });

  it("closes a cleartext HTTP/2 (prior knowledge) connection at once", async () => {
    const session = http2.connect(`http://127.0.0.1:${listener.port}`);
    session.on("error", () => {});
    opened.push(session);
    const ms = await msUntilClosed(session, FAIL_AFTER_MS, "h2c session");
    assert.ok(ms < LIMITS.sniffTimeoutMs, `closed after ${ms} ms, not at once`);
  });

  it("closes a connection that never starts the handshake at the sniff deadline", async () => {
    const socket = await openSocket(listener.port);
    opened.push(socket);
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "silent socket");
    assert.ok(ms >= LIMITS.sniffTimeoutMs - 100, `closed after ${ms} ms, before the deadline`);
  });

  it("closes a connection that stops halfway through the handshake at the sniff deadline", async () => {
    const socket = await openSocket(listener.port);
    opened.push(socket);
    // A TLS record header announcing a 512-byte ClientHello, then a few bytes of it, then silence.
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]));
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "half handshake");
    assert.ok(ms >= LIMITS.sniffTimeoutMs - 100, `closed after ${ms} ms, before the deadline`);
  });

  it("closes a connection that trickles its ClientHello a byte at a time (the deadline is absolute)", async () => {
    const socket = await openSocket(listener.port);
    opened.push(socket);
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.alloc(0x200)]);
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < hello.length - 1 && !socket.destroyed) socket.write(hello.subarray(sent, ++sent));
    }, 50);
    try {
      const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "trickled handshake");
      assert.ok(ms < LIMITS.sniffTimeoutMs + 500, `closed after ${ms} ms`);
    } finally {
      clearInterval(trickle);
    }
  });

  it("closes an HTTP/1.1 TLS connection that sends no request after its handshake", async () => {
    const socket = await tlsConnect(listener.port, material.caPem, ["http/1.1"]);
    opened.push(socket);
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "silent TLS HTTP/1.1");
    assert.ok(ms >= LIMITS.headersTimeoutMs - 100, `closed after ${ms} ms, before the headers timeout`);
  });

  it("closes partial HTTP/1.1 headers over TLS with 408 after the headers timeout", async () => {
    const socket = await tlsConnect(listener.port, material.caPem, ["http/1.1"]);
    opened.push(socket);
    const answer: Buffer[] = [];
    socket.on("data", (c: Buffer) => answer.push(c));
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    const ms = await msUntilClosed(socket, FAIL_AFTER_MS, "partial headers over TLS");
    assert.ok(ms >= LIMITS.headersTimeoutMs - 100, `closed after ${ms} ms`);
    assert.match(Buffer.concat(answer).toString(), /^HTTP\/1\.1 408/);
  });

  it("closes an HTTP/2 TLS session that opens no stream after the idle timeout", async () => {
    const session = http2.connect(`https://localhost:${listener.port}`, { ca: material.caPem });
    session.on("error", () => {});
    opened.push(session);
    const ms = await msUntilClosed(session, FAIL_AFTER_MS, "idle TLS session");
    assert.ok(ms >= LIMITS.http2IdleTimeoutMs - 100, `closed after ${ms} ms`);
  });
});

describe("listener with TLS and a connection cap of 2", () => {
  let material: TestTls;
  let listener: Listener;

  before(async () => {
    material = makeTestTls();
    const limits = { ...LIMITS, maxConnections: 2 };
    listener = await listen(versionHandler, { port: 0, host: "127.0.0.1", limits, log, tls: { cert: material.serverCertPem, key: material.serverKeyPem } });
  });
  after(async () => {
    await listener.close();
    material.cleanup();
  });

  it("counts a TLS connection until it closes, then admits new ones (ten in a row, over both protocols)", async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await http1Get({ isTls: true, host: "127.0.0.1", port: listener.port, ca: material.caPem })).body, "1.1 tls");
      assert.equal((await http2Get(`https://localhost:${listener.port}`, { ca: material.caPem })).body, "2.0 tls");
    }
    const held = [await tlsConnect(listener.port, material.caPem, ["http/1.1"]), await tlsConnect(listener.port, material.caPem, ["http/1.1"])];
    try {
      const third = await openSocket(listener.port);
      await msUntilClosed(third, FAIL_AFTER_MS, "a connection over the cap");
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});

describe("listener without TLS", () => {
  let listener: Listener;

  before(async () => {
    listener = await listen(versionHandler, { port: 0, host: "127.0.0.1", limits: LIMITS, log });
  });
  after(() => listener.close());

  it("sends the HTTP/2 preface to the HTTP/2 server and anything else to the HTTP/1.1 server", async () => {
    assert.equal((await http2Get(`http://127.0.0.1:${listener.port}`, {})).body, "2.0 plain");
    assert.equal((await http1Get({ isTls: false, host: "127.0.0.1", port: listener.port })).body, "1.1 plain");
  });

  it("serves an HTTP/2 client whose preface arrives in pieces (the sniffed bytes are handed to the session)", async () => {
    // The client's bytes go out through a JS duplex that cuts its first write into 3-byte pieces,
    // a few milliseconds apart, so the listener sniffs the preface over several reads.
    const socket = net.connect(listener.port, "127.0.0.1");
    await once(socket, "connect");
    let isFirst = true;
    const cutting = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        if (!isFirst) return void socket.write(chunk, callback);
        isFirst = false;
        void (async () => {
          for (let at = 0; at < chunk.length; at += 3) {
            socket.write(chunk.subarray(at, at + 3));
            await new Promise((r) => setTimeout(r, 2));
          }
          callback();
        })();
      },
      destroy(err, callback) {
        socket.destroy();
        callback(err);
      },
    });
    socket.on("data", (data: Buffer) => cutting.push(data));
    socket.on("end", () => cutting.push(null));
    const session = http2.connect(`http://127.0.0.1:${listener.port}`, { createConnection: () => cutting });
    try {
      for (const path of ["/a", "/b"]) {
        const stream = session.request({ ":path": path });
        let body = "";
        stream.on("data", (c: Buffer) => (body += c));
        await once(stream, "end");
        assert.equal(body, "2.0 plain");
      }
    } finally {
      session.destroy();
      socket.destroy();
    }
  });

  it("answers 500 to a request whose handler throws, over both protocols, and serves on", async () => {
    const throwing = await listen(
      (req, res) => {
        if (req.url === "/throw") throw new Error("handler bug");
        versionHandler(req, res);
      },
      { port: 0, host: "127.0.0.1", limits: LIMITS, log },
    );
    try {
      const h1 = await http1Get({ isTls: false, host: "127.0.0.1", port: throwing.port, path: "/throw" });
      assert.deepEqual([h1.status, h1.body], [500, "internal error\n"]);
      const session = http2.connect(`http://127.0.0.1:${throwing.port}`);
      try {
        const status = await new Promise<number>((resolve, reject) => {
          const stream = session.request({ ":path": "/throw" });
          stream.on("response", (headers) => resolve(Number(headers[":status"])));
          stream.on("error", reject);
          stream.resume();
        });
        assert.equal(status, 500);
      } finally {
        session.close();
      }
      assert.equal((await http1Get({ isTls: false, host: "127.0.0.1", port: throwing.port })).body, "1.1 plain");
    } finally {
      await throwing.close();
    }
  });

  it("does not speak TLS", async () => {
    await assert.rejects(http1Get({ isTls: true, host: "127.0.0.1", port: listener.port, rejectUnauthorized: false }), /EPROTO|wrong version|socket hang up|ECONNRESET/);
  });
});

function tlsConnect(port: number, ca: string, alpn: string[]): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, ALPNProtocols: alpn }, () => resolve(socket));
    socket.once("error", reject);
  });
}
