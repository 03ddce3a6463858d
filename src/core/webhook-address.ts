/**
 * Which webhook URLs and addresses the control plane may send to (server-side request forgery).
 * A webhook URL is chosen by whoever submits a job, and the POST comes from the control plane,
 * which may reach networks the submitter cannot: the database, a cloud's metadata service
 * (169.254.169.254, fd00:ec2::254), the Kubernetes API. So only http(s) URLs are taken, and an
 * address in any private, loopback, link-local, unique-local, multicast, unspecified, CGNAT,
 * documentation or reserved range is refused, IPv4 and IPv6 alike, including IPv4 written inside
 * IPv6 (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16, the deprecated compatible ::/96).
 * HODEI_WEBHOOK_ALLOW_PRIVATE=1 lifts the address rule (a receiver on the same network).
 *
 * The submit checks what it can without the network (the scheme, the length, an address written
 * as the host, `localhost`); the sender checks every address a name resolves to at delivery time
 * and connects to exactly the address it checked (scheduler/webhook-send.ts). Pure: no I/O.
 */
import { isIP } from "node:net";

export const WEBHOOK_LIMITS = {
  /** URLs per job (SubmitJobRequest.notify). */
  urlsPerJob: 4,
  /** Characters of one URL. */
  urlChars: 2048,
} as const;

/** [first address, prefix length, what it is] of every IPv4 range a webhook may not reach. */
const IPV4_REFUSED: [string, number, string][] = [
  ["0.0.0.0", 8, "unspecified (this network)"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared address space (CGNAT)"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local (cloud metadata)"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "IETF protocol assignments"],
  ["192.0.2.0", 24, "documentation"],
  ["192.88.99.0", 24, "6to4 relay anycast"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["198.51.100.0", 24, "documentation"],
  ["203.0.113.0", 24, "documentation"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved (and broadcast)"],
];

function ipv4ToInt(text: string): number {
  return text.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

/** Why an IPv4 address may not be sent to, or null. */
function ipv4Refusal(text: string): string | null {
  const n = ipv4ToInt(text);
  for (const [first, bits, what] of IPV4_REFUSED) {
    const size = 2 ** (32 - bits);
    const start = ipv4ToInt(first);
    if (n >= start && n < start + size) return what;
  }
  return null;
}

/** The 8 groups of an IPv6 address (a trailing dotted IPv4 part becomes two groups); null when malformed. */
function ipv6Groups(text: string): number[] | null {
  let body = text.replace(/%.*$/, ""); // a zone id (fe80::1%eth0) says nothing about the range
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (v4) {
    if (isIP(v4[1]) !== 4) return null;
    const n = ipv4ToInt(v4[1]);
    body = `${body.slice(0, -v4[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = body.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

/** The IPv4 address in groups 6 and 7 of an IPv6 address. */
function embeddedIpv4(groups: number[], at = 6): string {
  return [groups[at] >> 8, groups[at] & 0xff, groups[at + 1] >> 8, groups[at + 1] & 0xff].join(".");
}

/** Why an IPv6 address may not be sent to, or null. */
function ipv6Refusal(text: string): string | null {
  const g = ipv6Groups(text);
  if (!g) return "not a valid IPv6 address";
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 8)) return "unspecified";
  if (zeros(0, 7) && g[7] === 1) return "loopback";
  // IPv4 inside IPv6: judged as that IPv4 address.
  const inner = (v4: string, how: string) => {
    const why = ipv4Refusal(v4);
    return why ? `${why} (${v4} as ${how})` : null;
  };
  if (zeros(0, 5) && g[5] === 0xffff) return inner(embeddedIpv4(g), "IPv4-mapped IPv6");
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return inner(embeddedIpv4(g), "IPv4-translated IPv6");
  if (zeros(0, 6)) return "IPv4-compatible IPv6 (deprecated)";
  if (g[0] === 0x64 && g[1] === 0xff9b) return g[2] === 0 && zeros(3, 6) ? inner(embeddedIpv4(g), "NAT64") : "NAT64 (local use)";
  if (g[0] === 0x2002) return inner(embeddedIpv4(g, 1), "6to4");
  if ((g[0] & 0xfe00) === 0xfc00) return "unique-local";
  if ((g[0] & 0xffc0) === 0xfe80) return "link-local";
  if ((g[0] & 0xffc0) === 0xfec0) return "site-local (deprecated)";
  if ((g[0] & 0xff00) === 0xff00) return "multicast";
  if (g[0] === 0x2001 && g[1] === 0x0db8) return "documentation";
  if (g[0] === 0x0100 && zeros(1, 4)) return "discard-only";
  if (g[0] === 0x2001 && g[1] < 0x200) return "IETF protocol assignments (Teredo, ORCHID, ...)";
  return null;
}

/**
 * Why a webhook may not be sent to this IP address (a phrase naming its range), or null when it
 * may. Anything that is not an IP address is refused.
 */
export function addressRefusal(address: string): string | null {
  const version = isIP(address);
  if (version === 4) return ipv4Refusal(address);
  if (version === 6) return ipv6Refusal(address);
  return "not an IP address";
}

/** The host of a parsed URL as an IP address (brackets of IPv6 removed), or null for a name. */
export function literalAddress(url: URL): string | null {
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) ? host : null;
}

/**
 * What is wrong with a webhook URL, in words, or null when it may be used. Checked without the
 * network: the scheme, the length, and a host written as an address or as `localhost`. A name is
 * checked again, by its addresses, each time it is sent to.
 */
export function webhookUrlProblem(text: string, isPrivateAllowed: boolean): string | null {
  if (text.length > WEBHOOK_LIMITS.urlChars) return `longer than ${WEBHOOK_LIMITS.urlChars} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `"${text}" is not a URL (write it as https://host/path)`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `"${url.protocol}" URLs are not sent to: use http or https`;
  if (url.hostname === "") return "has no host";
  if (isPrivateAllowed) return null;
  const address = literalAddress(url);
  const why = address !== null ? addressRefusal(address) : isLocalName(url.hostname) ? "loopback" : null;
  return why ? `${url.host} is a ${why} address; webhooks go to public addresses only (the server allows others with HODEI_WEBHOOK_ALLOW_PRIVATE=1)` : null;
}

/** Names that always mean this machine (RFC 6761), refused without asking a resolver. */
function isLocalName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
}

/**
 * A URL as the API shows it: without credentials, query or fragment, which may hold a secret of
 * the receiver (a token in `?key=`). `isOriginOnly`: the scheme, host and port alone.
 */
export function displayedWebhookUrl(text: string, isOriginOnly = false): string {
  try {
    const url = new URL(text);
    return isOriginOnly ? url.origin : `${url.origin}${url.pathname}`;
  } catch {
    return "";
  }
}
