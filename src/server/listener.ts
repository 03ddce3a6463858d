/**
 * One port for everything. Each new connection is sniffed: a connection that opens with the
 * HTTP/2 preface ("PRI * HTTP/2.0", gRPC with prior knowledge) goes to the HTTP/2 server, anything
 * else to the HTTP/1.1 server. Both run the same request handler (Connect routes + plain HTTP).
 *
 * With TLS (options.tls), a connection must open with a TLS handshake; ALPN then decides: "h2" goes
 * to the HTTP/2 server, "http/1.1" or no ALPN to the HTTP/1.1 server (HTTP/2 over TLS requires
 * ALPN, RFC 9113 section 3.2). A connection that does not start a handshake is refused: see
 * refusePlainText for how its user finds out.
 *
 * Invariant: no connection stays open doing nothing. A socket must decide its protocol within
 * sniffTimeoutMs of accept (with TLS: finish its handshake within it, so a peer that stops halfway
 * through the handshake is closed too); HTTP/1.1 requests must arrive within headersTimeoutMs /
 * requestTimeoutMs and idle keep-alive connections close after keepAliveTimeoutMs; HTTP/2 sessions
 * and streams have the deadlines of http2-deadlines.ts. None of them limits a response, so a quiet
 * `logs -f` is never cut. TLS changes none of these bounds.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "pino";
import { StartupError } from "../core/errors.js";
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
  /** Serve TLS only, with this certificate (chain) and key, PEM; undefined: plain HTTP/1.1 and h2c. */
  tls?: { cert: string; key: string };
  /** Which port this is, in log lines ("main", "worker"). */
  name?: string;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0");
/** The first byte of every TLS connection: a handshake record (ContentType 22). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** ALPN protocols offered with TLS, preferred first. */
const ALPN_PROTOCOLS = ["h2", "http/1.1"];
/**
 * What a plain-text HTTP/1.1 request gets from a TLS port: a Connect error, so that both curl and the
 * CLI print the reason instead of a bare "connection reset". Fixed bytes, sent once, before reading
 * the request: cheap, and it tells a stranger nothing the port's existence does not.
 */
const PLAIN_TEXT_ANSWER = (() => {
  const body = `${JSON.stringify({ code: "failed_precondition", message: "this server speaks HTTPS (TLS) only: use an https:// URL" })}\n`;
  return `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
})();
/** Header block limit on both protocols, bytes: Node's HTTP/1.1 default, applied to HTTP/2 too. */
const MAX_HEADER_BYTES = 16 * 1024;
/** Memory one HTTP/2 session may hold (header tables, queued frames), MB: Node's default, stated. */
const HTTP2_MAX_SESSION_MEMORY_MB = 10;
/**
 * HTTP/2 flow-control windows for what clients send, bytes. HTTP/2's default is 64 KiB per stream
 * and per connection: a sender may have that much in flight before the server's WINDOW_UPDATE
 * comes back, so an agent streaming a large log would wait for a round trip (an event-loop turn of
 * this server) every 64 KiB. A stream may have 2 MiB in flight (an agent's log batch is at most
 * 1 MiB) and a connection 8 MiB. Data is read off the socket as it arrives (Connect consumes each
 * message), so these bound what a slow handler lets a connection hold, not what it allocates.
 */
const HTTP2_STREAM_WINDOW_BYTES = 2 * 1024 * 1024;
const HTTP2_CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024;
/** Refused connections are logged at most this often. */
const DROP_LOG_INTERVAL_MS = 60_000;

/** The connection's addresses, which tell its TCP and TLS sockets apart from every other connection's. */
function connectionKey(socket: net.Socket): string {
  return `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * A connection to a TLS port that did not open with a handshake. How its user finds out: an
 * HTTP/1.1 request (curl, the CLI, a browser with an http:// URL) is answered 400 with a Connect
 * error saying "this server speaks HTTPS (TLS) only"; the server logs a warning (at most once a
 * minute). A cleartext HTTP/2 client (gRPC with prior knowledge) is simply closed: it could not read
 * an HTTP/1.1 answer, and agents are given https:// URLs by the server anyway.
 * The sniff deadline still bounds the socket: a peer that never reads our answer is cut by it.
 */
function refusePlainText(socket: net.Socket, firstBytes: Buffer): void {
  const n = Math.min(firstBytes.length, PREFACE.length);
  if (firstBytes.subarray(0, n).equals(PREFACE.subarray(0, n))) {
    socket.destroy();
    return;
  }
  // Keep reading (and dropping) what the client still sends: closing a socket with unread bytes
  // resets it, and the reset could reach the client before our answer does.
  socket.on("data", () => {});
  socket.resume();
  socket.end(PLAIN_TEXT_ANSWER);
}

export async function listen(handler: Handler, options: ListenOptions): Promise<Listener> {
  const { limits, log } = options;
  // A handler that throws inside Node's 'request' event would end the process: that request gets a
  // 500 instead (rpc-adapter.ts answers the one known case, a request without a usable Host, itself).
  const guarded = ((req: Parameters<Handler>[0], res: Parameters<Handler>[1]) => {
    try {
      handler(req, res);
    } catch (err) {
      log.error({ err, path: req.url }, "request handler threw");
      try {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error\n");
      } catch {
        (req.socket as net.Socket | undefined)?.destroy();
      }
    }
  }) as Handler;
  const h1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      // Node's requestTimeout covers the request only: once its body has ended the response may stream for ever.
      requestTimeout: limits.requestTimeoutMs,
      // Node checks both timeouts on this period (default 30 s, which would add up to 30 s to them).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    guarded as http.RequestListener,
  );
  h1.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // DANGER: Node starts the checker of headersTimeout/requestTimeout (and the list of connections
  // it checks) on the server's "listening" event (lib/_http_server.js setupConnectionsTracking).
  // h1 never listens itself (the sniffer hands it sockets), so without this neither timeout would
  // ever fire. hostile-connections.test.ts fails if a Node upgrade changes that.
  h1.emit("listening");
  const h2 = http2.createServer(
    {
      settings: { maxConcurrentStreams: limits.http2MaxConcurrentStreams, maxHeaderListSize: MAX_HEADER_BYTES, initialWindowSize: HTTP2_STREAM_WINDOW_BYTES },
      maxSessionMemory: HTTP2_MAX_SESSION_MEMORY_MB,
    },
    guarded as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const longLivedPaths = new Set(limits.longLivedPaths);
  h2.on("session", (session) => {
    sessions.add(session);
    session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW_BYTES);
    session.on("close", () => sessions.delete(session));
    enforceHttp2Deadlines(session, {
      idleTimeoutMs: limits.http2IdleTimeoutMs,
      requestTimeoutMs: limits.requestTimeoutMs,
      longLivedPaths,
      onClose: (reason, path) => log.debug({ reason, path }, "http2 deadline passed; closing"),
    });
  });

  /** Hands a socket whose protocol is known to its server. */
  const route = (socket: net.Socket, isH2: boolean, seen: Buffer) => {
    socket.pause();
    if (seen.length > 0) socket.unshift(seen);
    if (isH2) {
      // The HTTP/2 session takes the socket's native handle and first feeds itself what is
      // buffered on the socket (the bytes unshifted above): every stream of it then reads and
      // writes the socket directly, with no JS stream in between (which cost a copy and several
      // calls per write: the agents' log streams go through here).
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  let lastPlainLogMs = 0;

  // TLS goes through a tls.Server (never listening itself, like h1), the path Node's own HTTPS and
  // HTTP/2 servers take; it adds ALPN, reports failed handshakes, and bounds them once more with
  // handshakeTimeout. Our absolute deadline is the sniff timer of the TCP socket, cleared here once
  // the handshake is done (the TLS socket is matched to its TCP socket by the connection's addresses).
  const handshakes = new Map<string, () => void>();
  const tlsServer = options.tls
    ? tls.createServer({ cert: options.tls.cert, key: options.tls.key, ALPNProtocols: ALPN_PROTOCOLS, handshakeTimeout: limits.sniffTimeoutMs })
    : undefined;
  tlsServer?.on("secureConnection", (secure: tls.TLSSocket) => {
    handshakes.get(connectionKey(secure))?.();
    sockets.add(secure);
    secure.on("close", () => sockets.delete(secure));
    route(secure, secure.alpnProtocol === "h2", Buffer.alloc(0));
  });
  tlsServer?.on("tlsClientError", (err: Error, secure: tls.TLSSocket) => {
    log.debug({ port: options.name, remoteAddress: secure.remoteAddress, err: err.message }, "tls handshake failed; closing");
    secure.destroy();
  });

  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // An absolute deadline: a peer trickling preface bytes, or handshake bytes, does not extend it.
    const sniffTimer = setTimeout(() => {
      log.debug({ port: options.name, remoteAddress: socket.remoteAddress }, "connection sent no request in time; closing");
      socket.destroy();
    }, limits.sniffTimeoutMs);
    socket.on("close", () => clearTimeout(sniffTimer));
    socket.on("error", () => socket.destroy());
    if (tlsServer) {
      const onFirstBytes = (chunk: Buffer) => {
        socket.off("data", onFirstBytes);
        socket.pause();
        if (chunk[0] !== TLS_HANDSHAKE_RECORD) {
          if (Date.now() - lastPlainLogMs >= DROP_LOG_INTERVAL_MS) {
            lastPlainLogMs = Date.now();
            log.warn({ port: options.name, remoteAddress: socket.remoteAddress }, "plain-text connection refused: this port speaks TLS only (clients need an https:// URL)");
          }
          refusePlainText(socket, chunk);
          return;
        }
        const key = connectionKey(socket);
        handshakes.set(key, () => clearTimeout(sniffTimer));
        socket.on("close", () => handshakes.delete(key));
        // The TLS socket takes over the native handle and first replays what was already read.
        socket.unshift(chunk);
        tlsServer.emit("connection", socket);
      };
      socket.on("data", onFirstBytes);
      return;
    }
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && seen.length < PREFACE.length) return; // undecided: wait for more bytes
      clearTimeout(sniffTimer);
      socket.off("data", onData);
      route(socket, isH2, seen);
    };
    socket.on("data", onData);
  });
  server.maxConnections = limits.maxConnections;
  let lastDropLogMs = 0;
  server.on("drop", () => {
    if (Date.now() - lastDropLogMs < DROP_LOG_INTERVAL_MS) return;
    lastDropLogMs = Date.now();
    log.warn({ port: options.name, maxConnections: limits.maxConnections }, "connection refused: HODEI_MAX_CONNECTIONS connections are open");
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(explainListenError(err, options));
    server.once("error", onError);
    server.listen(options.port, options.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  // Once listening, an accept that fails for good (out of file descriptors or memory) is an 'error'
  // on the server: logged; unheard, it would end the process.
  server.on("error", (err) => log.error({ err, port: options.name }, "accepting a connection failed"));
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

/** Why the port cannot be had, and which setting to change: a StartupError for what the operator must fix. */
export function explainListenError(err: NodeJS.ErrnoException, options: Pick<ListenOptions, "port" | "host" | "name">): Error {
  const variable = options.name === "worker" ? "HODEI_WORKER_PORT" : "HODEI_PORT";
  const where = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
  switch (err.code) {
    case "EADDRINUSE":
      return new StartupError(`cannot listen on ${where}: the port is in use (another hodei server?): stop that process or set ${variable} to a free port`, { cause: err });
    case "EACCES":
      return new StartupError(`cannot listen on ${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE): set ${variable} to a port above 1023`, { cause: err });
    case "EADDRNOTAVAIL":
      return new StartupError(`cannot listen on ${where}: no interface of this machine has the address ${options.host}: fix HODEI_HOST`, { cause: err });
    default:
      return err;
  }
}
