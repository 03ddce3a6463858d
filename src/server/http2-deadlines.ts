/**
 * Deadlines of one HTTP/2 connection (session), so that a peer cannot hold it open doing nothing:
 * - a session with no open stream is closed (GOAWAY) after idleTimeoutMs. Streams are counted here
 *   rather than with session.setTimeout, which counts frames: a log follower whose job prints
 *   nothing sends no frames for minutes yet is a live stream and must keep its connection.
 * - each stream must finish sending its request (END_STREAM) within requestTimeoutMs of opening,
 *   else it is reset with CANCEL; what the server sends back afterwards (a log follow) is not
 *   limited. Long-lived bidi streams (the worker stream, whose agent heartbeats every few seconds
 *   and whose silence the worker service bounds) are exempt by path.
 */
import http2 from "node:http2";

export interface Http2Deadlines {
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  /** Request paths exempt from requestTimeoutMs. */
  longLivedPaths: ReadonlySet<string>;
  /** Told why a session or stream was closed, for the log. */
  onClose(reason: "idle session" | "request body timeout", path?: string): void;
}

/** After GOAWAY, a peer that keeps the session open anyway is cut after this long. */
const GOAWAY_GRACE_MS = 1000;

export function enforceHttp2Deadlines(session: http2.ServerHttp2Session, deadlines: Http2Deadlines): void {
  let openStreams = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const startIdleTimer = () => {
    idleTimer = setTimeout(() => {
      deadlines.onClose("idle session");
      session.close();
      setTimeout(() => session.destroy(), GOAWAY_GRACE_MS).unref();
    }, deadlines.idleTimeoutMs);
    idleTimer.unref();
  };
  startIdleTimer();
  session.once("close", () => clearTimeout(idleTimer));

  session.on("stream", (stream, headers) => {
    openStreams++;
    clearTimeout(idleTimer);
    const path = String(headers[":path"] ?? "").split("?", 1)[0];
    let requestTimer: NodeJS.Timeout | undefined;
    if (!stream.endAfterHeaders && !deadlines.longLivedPaths.has(path)) {
      requestTimer = setTimeout(() => {
        // remoteClose: the peer has sent END_STREAM, whether or not the handler read the body yet.
        if (stream.destroyed || stream.state.remoteClose) return;
        deadlines.onClose("request body timeout", path);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, deadlines.requestTimeoutMs);
      requestTimer.unref();
    }
    stream.once("close", () => {
      clearTimeout(requestTimer);
      openStreams--;
      if (openStreams === 0 && !session.closed && !session.destroyed) startIdleTimer();
    });
  });
}
