/**
 * With HODEI_AUTH=off the server listens on loopback only (config.ts), and anyone on this machine may
 * use it; a web page must not. A page's own requests to 127.0.0.1 are refused by the browser's
 * same-origin rule, but DNS rebinding gets around it: the attacker's name first resolves to their
 * server, then to 127.0.0.1, and the page, still "same origin" with itself, reaches this server. Its
 * requests then carry the attacker's name as Host. So, with auth off, only requests addressed to
 * this machine by a loopback name or address, or by its own hostname, are served; others get 403.
 *
 * Agents' calls (WorkerService) are not checked: they authenticate with their OTP token and session
 * whatever HODEI_AUTH says, and a container may reach the server by another name.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { hostname } from "node:os";
import { isLoopbackHost } from "../config.js";
import { WorkerService } from "../gen/hodei/v1/worker_pb.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

const WORKER_PATH_PREFIX = `/${WorkerService.typeName}/`;

/** The host part of a Host (or :authority) header: "[::1]:7070" -> "::1", "a.b:80" -> "a.b". */
export function hostOfHeader(header: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(header);
  if (bracketed) return bracketed[1];
  const colon = header.lastIndexOf(":");
  // More than one colon without brackets: an IPv6 address written bare (not valid in Host, kept whole).
  return colon !== -1 && header.indexOf(":") === colon ? header.slice(0, colon) : header;
}

/** True when a request addressed so reaches this machine by a name no other site can take. */
export function isLocalHostHeader(header: string | undefined, ownHostname = hostname()): boolean {
  if (!header) return false;
  const host = hostOfHeader(header.trim()).toLowerCase().replace(/\.$/, "");
  // *.localhost is loopback by RFC 6761 (browsers resolve it so themselves); no one can register it.
  return isLoopbackHost(host) || host.endsWith(".localhost") || host === ownHostname.toLowerCase();
}

/** Wraps the handler of a server running without authentication (see above). */
export function guardLoopbackHost(handler: (req: NodeRequest, res: NodeResponse) => void): (req: NodeRequest, res: NodeResponse) => void {
  return (req, res) => {
    if ((req.url ?? "").startsWith(WORKER_PATH_PREFIX)) return handler(req, res);
    const header = req.headers.host ?? (req.headers[":authority"] as string | undefined);
    if (isLocalHostHeader(header)) return handler(req, res);
    res.writeHead(403, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        code: "permission_denied",
        message: `this server runs without authentication (HODEI_AUTH=off) and answers requests addressed to 127.0.0.1, localhost or this machine's name only, not to ${JSON.stringify((header ?? "").slice(0, 100))}: a web page could otherwise reach it by DNS rebinding; use http://127.0.0.1:PORT, or turn authentication on`,
      }),
    );
  };
}
