/**
 * TLS failures of the CLI's connection, in words that say what to do: the server's certificate
 * cannot be verified (pass its CA), names another host, has expired, or the server does not speak
 * TLS at all. Node reports them as error codes somewhere in the ConnectError's cause chain.
 */

/** OpenSSL's verification failures that another CA file fixes. */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);
const OUT_OF_DATE = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);
/** An https:// URL to a server that answered in plain text. */
const NOT_TLS = new Set(["ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_PACKET_LENGTH_TOO_LONG", "ERR_SSL_HTTP_REQUEST"]);

/** The first Node error code in err's cause chain, with that error's message. */
function codeOf(err: unknown): { code: string; message: string } | undefined {
  const seen = new Set<unknown>();
  for (let cause = err; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string") return { code, message: cause.message };
  }
  return undefined;
}

/** The line to print for a TLS failure, or undefined when err is no TLS failure. */
export function describeTlsFailure(err: unknown, serverUrl: string): string | undefined {
  const found = codeOf(err);
  if (!found) return undefined;
  const { code, message } = found;
  if (UNTRUSTED.has(code)) {
    return `cannot verify the TLS certificate of the Hodei server at ${serverUrl} (${message}): pass the CA certificate that issued it with --ca-cert FILE or HODEI_TLS_CA`;
  }
  if (OUT_OF_DATE.has(code)) return `the TLS certificate of the Hodei server at ${serverUrl} is not valid now (${message}): the server needs a current certificate`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the TLS certificate of the Hodei server does not name the host of ${serverUrl} (${message}): use an address the certificate names in --server or HODEI_SERVER_URL`;
  }
  if (NOT_TLS.has(code) || (code === "EPROTO" && /wrong version number|http request/i.test(message))) {
    return `the server at ${serverUrl} does not speak TLS (it answered in plain text): use an http:// URL, or turn TLS on at the server (HODEI_TLS_CERT, HODEI_TLS_KEY)`;
  }
  return undefined;
}
