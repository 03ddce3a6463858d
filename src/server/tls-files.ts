/**
 * The server's TLS material (HODEI_TLS_CERT, HODEI_TLS_KEY, HODEI_TLS_CA), read once at start-up and
 * checked, so that a mistake stops the server with a message saying what to fix instead of failing
 * every handshake later. What cannot be known for sure (whether workers will accept the certificate)
 * becomes a warning.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";

export interface ServerTls {
  /** PEM: the certificate chain (leaf first) and its key, for the listener. */
  cert: string;
  key: string;
  /** PEM of the CA given to every worker; undefined: workers verify with the system's roots. */
  caPem?: string;
  /** The leaf certificate, to check worker URLs against its names. */
  leaf: X509Certificate;
  /** Things that will likely make clients refuse the certificate; logged as warnings. */
  warnings: string[];
}

export interface TlsPaths {
  certPath: string;
  keyPath: string;
  caPath?: string;
}

/** Workers get the CA in their environment (HODEI_TLS_CA_PEM): keep it well inside what exec allows. */
export const MAX_CA_BYTES = 64 * 1024;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readPem(variable: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`invalid configuration: ${variable}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function certificatesIn(variable: string, path: string, pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`invalid configuration: ${variable}: ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new Error(`invalid configuration: ${variable}: ${path} holds a certificate that does not parse: ${(err as Error).message}`, { cause: err });
    }
  });
}

export function loadServerTls(paths: TlsPaths, now = new Date()): ServerTls {
  const cert = readPem("HODEI_TLS_CERT", paths.certPath);
  const key = readPem("HODEI_TLS_KEY", paths.keyPath);
  const chain = certificatesIn("HODEI_TLS_CERT", paths.certPath, cert);
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(
      `invalid configuration: HODEI_TLS_CERT and HODEI_TLS_KEY do not make a TLS identity (${(err as Error).message}): the key must be the certificate's, both PEM`,
      { cause: err },
    );
  }
  const leaf = chain[0];
  const warnings: string[] = [];
  if (Date.parse(leaf.validTo) < now.getTime()) warnings.push(`the TLS certificate (HODEI_TLS_CERT) expired on ${leaf.validTo}: clients will refuse it`);
  let caPem: string | undefined;
  if (paths.caPath) {
    caPem = readPem("HODEI_TLS_CA", paths.caPath);
    if (Buffer.byteLength(caPem) > MAX_CA_BYTES) {
      throw new Error(
        `invalid configuration: HODEI_TLS_CA: ${paths.caPath} is ${Buffer.byteLength(caPem)} bytes; workers get it in their environment, which takes at most ${MAX_CA_BYTES}: give only the CA that issued HODEI_TLS_CERT`,
      );
    }
    const cas = certificatesIn("HODEI_TLS_CA", paths.caPath, caPem);
    if (!chainsTo(leaf, chain.slice(1), cas)) {
      warnings.push("HODEI_TLS_CA did not issue HODEI_TLS_CERT (nor did the intermediates in it): workers and the CLI given that CA will refuse the server's certificate");
    }
  }
  return { cert, key, caPem, leaf, warnings };
}

/** True when `leaf` leads to one of `cas` through `intermediates` (signatures checked, not dates). */
function chainsTo(leaf: X509Certificate, intermediates: X509Certificate[], cas: X509Certificate[]): boolean {
  let current = leaf;
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (cas.some((ca) => current.checkIssued(ca) && current.verify(ca.publicKey))) return true;
    const next = intermediates.find((c) => current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return false;
    current = next;
  }
  return false;
}

/** Why clients of `url` will refuse the server's certificate, or "" when it looks fine. */
export function tlsUrlWarning(serverTls: ServerTls | undefined, url: string): string {
  const parsed = new URL(url);
  if (!serverTls) return "";
  if (parsed.protocol !== "https:") return `TLS is on (HODEI_TLS_CERT), so workers need an https:// URL, not ${url}`;
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const named = net.isIP(host) ? serverTls.leaf.checkIP(host) : serverTls.leaf.checkHost(host);
  if (named) return "";
  return `the TLS certificate (HODEI_TLS_CERT) does not name ${host}, so workers given ${url} will refuse it: add ${host} to its subjectAltName, or give workers a URL with a name it has`;
}
