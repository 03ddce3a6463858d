/**
 * Hands connect-es the body of an enveloped request (gRPC, gRPC-Web, Connect streaming) one whole
 * envelope (5-byte header + message) per chunk, however the client cut it up.
 *
 * Why: connect-es's envelope decoder (protocol/envelope.js) keeps the chunks of an unfinished
 * envelope in an array and sums their lengths on every new chunk, so a message sent as N tiny
 * chunks (1-byte HTTP/1.1 chunks, tiny HTTP/2 DATA frames) costs O(N^2): measured, 50,000 one-byte
 * chunks (300 KB on the wire) took 31 s of server CPU. Here each chunk costs O(1) and each
 * envelope is joined once. A header announcing more than maxMessageBytes is passed on at once, so
 * connect-es refuses it before any of its body arrives.
 */

const HEADER_BYTES = 5;

export async function* wholeEnvelopes(body: AsyncIterable<Uint8Array>, maxMessageBytes: number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  /** Bytes the envelope in progress needs: its header, then header and message once the header is read. */
  let need = HEADER_BYTES;
  let hasHeader = false;
  const it = body[Symbol.asyncIterator]();
  for (let next = await it.next(); !next.done; next = await it.next()) {
    pending.push(next.value);
    pendingBytes += next.value.byteLength;
    while (pendingBytes >= need) {
      // One chunk is used as is; several are joined once (the leftover after an envelope is a view).
      const joined = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
      if (!hasHeader) {
        const length = new DataView(joined.buffer, joined.byteOffset, HEADER_BYTES).getUint32(1);
        if (length > maxMessageBytes) {
          // connect-es answers resource_exhausted on this header; the rest is its to read (or not).
          yield joined;
          for (let rest = await it.next(); !rest.done; rest = await it.next()) yield rest.value;
          return;
        }
        pending = [joined];
        need = HEADER_BYTES + length;
        hasHeader = true;
        continue;
      }
      yield joined.subarray(0, need);
      const leftover = joined.subarray(need);
      pending = leftover.byteLength > 0 ? [leftover] : [];
      pendingBytes = leftover.byteLength;
      need = HEADER_BYTES;
      hasHeader = false;
    }
  }
  // An incomplete envelope is passed on for connect-es to refuse ("incomplete envelope").
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
}

/** Content types whose body is a sequence of envelopes rather than one bare message. */
export function isEnveloped(contentType: string | null): boolean {
  return /^application\/(grpc|grpc-web|connect\+)/i.test(contentType ?? "");
}
