/**
 * Hand-made requests for the hostile-client tests: bytes no well-behaved client would send, over
 * HTTP/1.1 and HTTP/2 to a server on loopback, plus what those tests measure (the server's
 * resident memory, when a socket is closed).
 */
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Readable } from "node:stream";
import zlib from "node:zlib";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One HTTP/1.1 request on a fresh connection; resolves with the whole answer. The connection is
 * keep-alive (then closed here), so that a server answering before the body has arrived drains the
 * body instead of closing on a client still writing it.
 */
export function http1Request(url: string, options: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string }): Promise<RawResponse> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise<RawResponse>((resolve, reject) => {
    const req = http.request(new URL(options.path, url), { method: options.method ?? "POST", headers: options.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  }).finally(() => agent.destroy());
}

/** One HTTP/2 request on a fresh session, closed afterwards; `end: false` leaves the request body open. */
export function http2Request(url: string, options: { path: string; headers?: Record<string, string>; body?: Buffer }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": options.path, te: "trailers", ...options.headers });
    let headers: RawResponse["headers"] = {};
    let trailers: RawResponse["trailers"] = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve({ status: Number(headers[":status"] ?? 0), headers, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(options.body);
  });
}

/** A length-prefixed message as gRPC, gRPC-Web and Connect streaming frame them. */
export function envelope(flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

/** gzip of `inflatedBytes` zero bytes, made chunk by chunk (the test process never holds the inflated form). */
export function gzipBomb(inflatedBytes: number): Promise<Buffer> {
  return compressedZeros(zlib.createGzip({ level: 9 }), inflatedBytes);
}

/** Brotli of `inflatedBytes` zero bytes (quality 1: quick to make, a few KiB all the same). */
export function brotliBomb(inflatedBytes: number): Promise<Buffer> {
  return compressedZeros(zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }), inflatedBytes);
}

async function compressedZeros(compressor: zlib.Gzip | zlib.BrotliCompress, inflatedBytes: number): Promise<Buffer> {
  const out: Buffer[] = [];
  compressor.on("data", (c: Buffer) => out.push(c));
  const done = new Promise((resolve) => compressor.on("end", resolve));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < inflatedBytes; written += zeros.length) {
    if (!compressor.write(zeros)) await new Promise((resolve) => compressor.once("drain", resolve));
  }
  compressor.end();
  await done;
  return Buffer.concat(out);
}

/** A /proc/<pid>/status field in bytes (VmRSS: resident now; VmHWM: peak resident). */
export function procMemoryBytes(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** CPU time (user + system) the process has used, seconds. */
export function procCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Sends `head` then `body` as HTTP/1.1 chunks of `chunkBytes` each (in one write: the server parses
 * each chunk separately all the same), with Connection: close; resolves with the raw answer.
 */
export function sendChunked(port: number, head: string, body: Buffer, chunkBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" }, () => {
      const parts: Buffer[] = [Buffer.from(`${head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n`)];
      for (let i = 0; i < body.length; i += chunkBytes) {
        const piece = body.subarray(i, i + chunkBytes);
        parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
      }
      parts.push(Buffer.from("0\r\n\r\n"));
      socket.write(Buffer.concat(parts));
    });
    const answer: Buffer[] = [];
    socket.on("data", (c: Buffer) => answer.push(c));
    socket.on("close", () => resolve(Buffer.concat(answer)));
    socket.on("error", reject);
  });
}

/** Resets the process's peak RSS (VmHWM) to its current RSS. */
export function resetPeakMemory(pid: number): void {
  // "5" in clear_refs resets the peak resident set size (Linux >= 4.0, same user).
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** Opens a TCP connection to 127.0.0.1:port and resolves once it is established. */
export function openSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * Resolves with the ms from now until `closable` emits "close". Rejects after failAfterMs: that is a
 * bound for a failing test to end, not the check itself. A stream is read (and what it reads
 * dropped, unless the caller listens to "data" too), since a socket whose peer's data is never read
 * never gets to its "end" and "close".
 */
export function msUntilClosed(closable: NodeJS.EventEmitter, failAfterMs: number, what: string): Promise<number> {
  const started = Date.now();
  if (closable instanceof Readable) closable.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: still open after ${failAfterMs} ms`)), failAfterMs);
    closable.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}
