/**
 * Whether a host name or address is this machine's loopback (127.0.0.0/8, ::1, localhost), as in
 * HODEI_HOST or a URL's hostname ("[::1]").
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}
