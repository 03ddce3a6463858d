/**
 * The agent's connection to the control plane: gRPC over one HTTP/2 connection, built here for the
 * agent (main.ts), its snapshot's warm-up and the tests alike, so they all get the same settings.
 *
 * Keep-alive: while a call is open, a PING goes out after pingIntervalMs without a byte from the
 * control plane, and a PING unanswered within pingTimeoutMs ends the connection and every call on
 * it (Unavailable, "PING timed out"). So a connection that died silently (the server's host gone,
 * a NAT or a load balancer that dropped the flow: TCP half-open, no reset ever comes) is found
 * within pingIntervalMs + pingTimeoutMs of its last sign of life, instead of when TCP gives up on
 * its retransmissions (about 15 minutes on Linux). An idle connection is not pinged (a warm agent
 * calls Ping itself, main.ts); a call on one silent for longer than pingIntervalMs checks it with a
 * PING first and dials anew if it goes unanswered. The server (Node's HTTP/2) answers PINGs without
 * counting them against the client: one every 10 s is far from its flood limits.
 *
 * dropConnection() closes the connection (or the dial in progress) and every call on it, so the
 * next call dials anew: for a call that got no answer in time (a TLS handshake that never ends, a
 * server that accepted and then went silent), which waiting on the same connection cannot fix.
 */
import type * as http2 from "node:http2";
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { AgentConfig } from "./config.js";

export interface AgentTransport {
  transport: Transport;
  /** Closes the current connection and its calls; the next call opens a new one. */
  dropConnection(reason: Error): void;
}

export function createAgentTransport(config: Pick<AgentConfig, "serverUrl" | "tlsCa" | "pingIntervalMs" | "pingTimeoutMs">): AgentTransport {
  // An https:// server is verified with the configured CA, else the system's roots (Node's default).
  const sessions = new Http2SessionManager(
    config.serverUrl,
    { pingIntervalMs: config.pingIntervalMs, pingTimeoutMs: config.pingTimeoutMs },
    config.tlsCa ? { ca: config.tlsCa } : undefined,
  );
  const guarded = new WeakSet<http2.Http2Session>();
  return {
    transport: createGrpcTransport({
      baseUrl: config.serverUrl,
      sessionManager: {
        authority: sessions.authority,
        async request(method, path, headers, options) {
          const stream = await sessions.request(method, path, headers, options);
          const session = stream.session as http2.ClientHttp2Session | undefined;
          if (session && !guarded.has(session)) {
            guarded.add(session);
            guardSession(session);
          }
          return stream;
        },
        notifyResponseByteRead: (stream) => sessions.notifyResponseByteRead(stream),
      },
    }),
    dropConnection: (reason) => sessions.abort(reason),
  };
}

/**
 * DANGER: connect-node's session manager (2.1) can end the process when a connection dies, which
 * is exactly when keep-alive acts: Node raises a destroyed session's error only once its socket has
 * closed, and a call made in between moves the manager on to a new connection, removing its
 * listeners from the old one first (connect-es#1768: the 'error' event, unheard, ends the process;
 * seen in transport.test.ts); and its PING timer may fire on a session destroyed a moment before,
 * whose ping() throws (connect-es#1795). So every session keeps a listener of its own (its calls
 * learn of the error from their streams) and a ping() that does nothing once it is destroyed (the
 * manager's PING timeout then finds the session gone).
 */
function guardSession(session: http2.ClientHttp2Session): void {
  session.on("error", () => {});
  const ping = session.ping.bind(session) as (...args: unknown[]) => boolean;
  session.ping = ((...args: unknown[]) => (session.destroyed ? false : ping(...args))) as typeof session.ping;
}
