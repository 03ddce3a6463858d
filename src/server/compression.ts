/**
 * The compressions the API speaks (gzip and brotli), with responses compressed at fast levels.
 *
 * connect-node's own compressionGzip and compressionBrotli compress with zlib's defaults: gzip level
 * 6 (about 20 ms of CPU per MB of log text here) and brotli quality 11, about 1.3 s per MB. A client
 * chooses the response's compression (Connect-Accept-Encoding, grpc-accept-encoding, or the
 * request's own encoding), so any client that asked for brotli had the server spend seconds of
 * CPU on every large response (GetLogs, WatchJob) on libuv's threadpool, which the server's file
 * writes and crypto share. Here gzip runs at level 1 and brotli at quality 3: 5 to 9 ms per MB of
 * logs, 10 to 20 % larger than zlib's defaults. Decompressing what clients send is connect-node's
 * (bounded by readMaxBytes, rpc-adapter.ts).
 */
import { promisify } from "node:util";
import zlib from "node:zlib";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";

/** gzip's fastest level. */
export const GZIP_LEVEL = zlib.constants.Z_BEST_SPEED;
/** Brotli's quality 3: about gzip level 1's cost, with brotli's ratio at level 6 or better. */
export const BROTLI_QUALITY = 3;

const gzip = promisify(zlib.gzip);
const brotliCompress = promisify(zlib.brotliCompress);

/** A Uint8Array over an ArrayBuffer, as connect-es's Compression returns (a zlib Buffer may share a pool). */
function ownBytes(bytes: Buffer): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
}

export const fastGzip: Compression = {
  name: "gzip",
  compress: async (bytes) => ownBytes(await gzip(bytes, { level: GZIP_LEVEL })),
  decompress: compressionGzip.decompress,
};

export const fastBrotli: Compression = {
  name: "br",
  compress: async (bytes) =>
    ownBytes(await brotliCompress(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength } })),
  decompress: compressionBrotli.decompress,
};

/** What the server accepts and answers with, in its order of preference. */
export const API_COMPRESSIONS: Compression[] = [fastGzip, fastBrotli];
