/**
 * Who serves a loopback address: the owners (uids) of the listening TCP sockets that would take a
 * connection to it, read from /proc/net/tcp and /proc/net/tcp6 (this network namespace's sockets).
 *
 * The CLI sends the admin key it finds in a data directory only to a server run by that key file's
 * owner: any local user can listen on a free loopback port (the server stopped, or on another
 * port), and would otherwise be handed the admin key by the next `hodei` command.
 */
import { readFileSync } from "node:fs";

/** A listening socket: its local address (hex, as /proc/net writes it), port and owner. */
interface Listening {
  family: 4 | 6;
  address: string;
  port: number;
  uid: number;
}

const LISTEN = "0A";
/** 0.0.0.0 as /proc/net/tcp writes it. */
const V4_ANY = "00000000";
/** ::, ::1 and the prefix of an IPv4-mapped address (::ffff:a.b.c.d) as /proc/net/tcp6 writes them (four 32-bit words, each in host order). */
const V6_ANY = "00000000000000000000000000000000";
const V6_LOOPBACK = "00000000000000000000000001000000";
const V6_MAPPED_PREFIX = "0000000000000000FFFF0000";

/**
 * An IPv4 address as /proc/net/tcp writes it: the 32-bit word of its network-order bytes, printed
 * in host order (little-endian on every machine Hodei runs on), so 127.0.0.1 is 0100007F.
 */
function procV4(address: string): string {
  return address
    .split(".")
    .reverse()
    .map((byte) => Number(byte).toString(16).toUpperCase().padStart(2, "0"))
    .join("");
}

function listening(text: string, family: 4 | 6): Listening[] {
  const found: Listening[] = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8 || fields[3] !== LISTEN) continue;
    const [address, port] = fields[1].split(":");
    found.push({ family, address: address.toUpperCase(), port: Number.parseInt(port, 16), uid: Number(fields[7]) });
  }
  return found;
}

/** Whether a listening socket takes connections to `target` (an IPv4 address, or "::1") on `port`. */
function takes(socket: Listening, target: string, port: number): boolean {
  if (socket.port !== port) return false;
  if (target === "::1") return socket.family === 6 && (socket.address === V6_ANY || socket.address === V6_LOOPBACK);
  const v4 = procV4(target);
  // A dual-stack IPv6 socket (::) takes IPv4 connections too, unless it is IPV6_V6ONLY, which /proc does not show.
  return socket.family === 4 ? socket.address === V4_ANY || socket.address === v4 : socket.address === V6_ANY || socket.address === V6_MAPPED_PREFIX + v4;
}

/**
 * The uids of the sockets listening for `host:port`, host a loopback name or address (localhost,
 * 127.x.y.z, ::1; localhost counts as both 127.0.0.1 and ::1). null when /proc/net cannot be read
 * (not Linux): unknown.
 */
export function loopbackListenerUids(host: string, port: number, procNet = "/proc/net"): number[] | null {
  let sockets: Listening[];
  try {
    sockets = listening(readFileSync(`${procNet}/tcp`, "utf8"), 4);
  } catch {
    return null;
  }
  try {
    sockets.push(...listening(readFileSync(`${procNet}/tcp6`, "utf8"), 6));
  } catch {
    // No IPv6 in this kernel: IPv4 sockets only.
  }
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const targets = bare === "localhost" ? ["127.0.0.1", "::1"] : [bare];
  const uids = new Set<number>();
  for (const socket of sockets) if (targets.some((target) => takes(socket, target, port))) uids.add(socket.uid);
  return [...uids];
}
