/**
 * One port for everything. Each new connection is sniffed: a connection that opens with the
 * HTTP/2 preface ("PRI * HTTP/2.0", gRPC with prior knowledge) goes to the HTTP/2 server, anything
 * else to the HTTP/1.1 server. Both run the same request handler (Connect routes + plain HTTP).
 *
 * Invariant: no connection stays open doing nothing. A socket must decide its protocol within
 * sniffTimeoutMs; HTTP/1.1 requests must arrive within headersTimeoutMs / requestTimeoutMs and idle
 * keep-alive connections close after keepAliveTimeoutMs; HTTP/2 sessions and streams have the
 * deadlines of http2-deadlines.ts. None of them limits a response, so a quiet `logs -f` is never cut.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import type { Logger } from "pino";
import { enforceHttp2Deadlines } from "./http2-deadlines.js";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface Listener {
  port: number;
  close(): Promise<void>;
}

/** Timeouts and caps of the listener; config.ts documents each and its default. */
export interface ListenerLimits {
  sniffTimeoutMs: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  http2IdleTimeoutMs: number;
  http2MaxConcurrentStreams: number;
  maxConnections: number;
  /** HTTP/2 request paths exempt from requestTimeoutMs (long-lived bidi streams). */
  longLivedPaths: string[];
}

export interface ListenOptions {
  port: number;
  host: string;
  limits: ListenerLimits;
  log: Logger;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0");
/** Header block limit on both protocols, bytes: Node's HTTP/1.1 default, applied to HTTP/2 too. */
const MAX_HEADER_BYTES = 16 * 1024;
/** Memory one HTTP/2 session may hold (header tables, queued frames), MB: Node's default, stated. */
const HTTP2_MAX_SESSION_MEMORY_MB = 10;
/** Refused connections are logged at most this often. */
const DROP_LOG_INTERVAL_MS = 60_000;

/** A duplex over `socket` whose readable side starts with `head`. */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy(err ?? undefined);
      callback(err);
    },
  });
  duplex.push(head);
  socket.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("close", () => duplex.destroy());
  socket.on("error", (err) => duplex.destroy(err));
  return Object.assign(duplex, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, setNoDelay: () => socket.setNoDelay(true) });
}

export async function listen(handler: Handler, options: ListenOptions): Promise<Listener> {
  const { limits, log } = options;
  const h1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      // Node's requestTimeout covers the request only: once its body has ended the response may stream for ever.
      requestTimeout: limits.requestTimeoutMs,
      // Node checks both timeouts on this period (default 30 s, which would add up to 30 s to them).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    handler as http.RequestListener,
  );
  h1.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // DANGER: Node starts the checker of headersTimeout/requestTimeout (and the list of connections
  // it checks) on the server's "listening" event (lib/_http_server.js setupConnectionsTracking).
  // h1 never listens itself (the sniffer hands it sockets), so without this neither timeout would
  // ever fire. hostile-connections.test.ts fails if a Node upgrade changes that.
  h1.emit("listening");
  const h2 = http2.createServer(
    {
      settings: { maxConcurrentStreams: limits.http2MaxConcurrentStreams, maxHeaderListSize: MAX_HEADER_BYTES },
      maxSessionMemory: HTTP2_MAX_SESSION_MEMORY_MB,
    },
    handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const longLivedPaths = new Set(limits.longLivedPaths);
  h2.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    enforceHttp2Deadlines(session, {
      idleTimeoutMs: limits.http2IdleTimeoutMs,
      requestTimeoutMs: limits.requestTimeoutMs,
      longLivedPaths,
      onClose: (reason, path) => log.debug({ reason, path }, "http2 deadline passed; closing"),
    });
  });

  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // An absolute deadline: a peer trickling preface bytes does not extend it.
    const sniffTimer = setTimeout(() => {
      log.debug({ remoteAddress: socket.remoteAddress }, "connection sent no request in time; closing");
      socket.destroy();
    }, limits.sniffTimeoutMs);
    socket.on("close", () => clearTimeout(sniffTimer));
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && seen.length < PREFACE.length) return; // undecided: wait for more bytes
      clearTimeout(sniffTimer);
      socket.off("data", onData);
      if (isH2) {
        // The HTTP/2 server reads the socket's native handle, which would miss the bytes already
        // read; a JS duplex in front of the socket replays them.
        h2.emit("connection", replaying(socket, seen));
      } else {
        socket.pause();
        socket.unshift(seen);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  server.maxConnections = limits.maxConnections;
  let lastDropLogMs = 0;
  server.on("drop", () => {
    if (Date.now() - lastDropLogMs < DROP_LOG_INTERVAL_MS) return;
    lastDropLogMs = Date.now();
    log.warn({ maxConnections: limits.maxConnections }, "connection refused: HODEI_MAX_CONNECTIONS connections are open");
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;

  return {
    port: address.port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.close();
        h1.closeIdleConnections();
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 1000).unref();
      });
    },
  };
}
