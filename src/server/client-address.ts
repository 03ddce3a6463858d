/**
 * The address a request came from, for the Connect handlers: rpc-adapter.ts puts it in each call's
 * context values, and a handler reads `ctx.values.get(clientAddressKey)`.
 *
 * It is the TCP peer of the connection. No forwarding header (X-Forwarded-For, Forwarded) is
 * trusted: any client can write one, and the point of the address is to tell clients apart when
 * they misbehave. "" when the peer is unknown (the connection is already gone).
 */
import type http from "node:http";
import type http2 from "node:http2";
import { type ContextValues, createContextKey, createContextValues } from "@connectrpc/connect";

export const clientAddressKey = createContextKey<string>("", { description: "hodei client address" });

type Peer = { remoteAddress?: string; stream?: { remoteAddress?: string } };

/** The remote address of the connection `req` arrived on, IPv4-mapped IPv6 written as IPv4. */
export function clientAddressOf(req: http.IncomingMessage | http2.Http2ServerRequest): string {
  let address: string | undefined;
  try {
    const socket = req.socket as unknown as Peer | undefined;
    // DANGER: listener.ts hands HTTP/2 connections to the HTTP/2 server through a JS duplex (to
    // replay the sniffed preface). Node wraps that duplex in a JSStreamSocket, whose own
    // remoteAddress is undefined and whose `stream` property is the duplex, which carries the TCP
    // socket's remoteAddress. `stream` is Node's internal field, not public API:
    // test/e2e/client-address.test.ts fails if a Node upgrade changes it.
    address = socket?.remoteAddress ?? socket?.stream?.remoteAddress;
  } catch {
    // An HTTP/2 request's socket proxy throws once its session is gone: the peer is unknown.
  }
  if (!address) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice("::ffff:".length) : address;
}

/** Context values of a call from `req`: its client address. */
export function clientContextValues(req: http.IncomingMessage | http2.Http2ServerRequest): ContextValues {
  return createContextValues().set(clientAddressKey, clientAddressOf(req));
}
