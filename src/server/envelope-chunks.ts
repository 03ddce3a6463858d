/**
 * Hands connect-es the body of an enveloped request (gRPC, gRPC-Web, Connect streaming) in chunks
 * its envelope decoder takes in linear time, copying as little as possible:
 * - small chunks are joined, up to MIN_PIECE_BYTES or the end of an envelope, whichever comes first;
 * - a chunk of MIN_PIECE_BYTES or more is passed on as it is (a view: no copy);
 * - whatever completes an envelope is passed on at once, so a message is never held back.
 *
 * Why: connect-es's envelope decoder (protocol/envelope.js) keeps the chunks of an unfinished
 * envelope in an array and sums their lengths on every new chunk, so a message sent as N tiny
 * chunks (1-byte HTTP/1.1 chunks, tiny HTTP/2 DATA frames) costs O(N^2): measured, 50,000 one-byte
 * chunks (300 KB on the wire) took 31 s of server CPU. Here every chunk but the last of an envelope
 * is at least MIN_PIECE_BYTES, or is followed by one that is, so an envelope of M bytes reaches the
 * decoder in at most 2 * M / MIN_PIECE_BYTES + 2 chunks. The decoder copies every envelope into a
 * message of its own anyway: joining whole envelopes here first (as this did before) copied every
 * large message twice, and a large job's log is made of 64 KiB messages that HTTP/2 delivers in
 * 16 KiB frames.
 *
 * A header announcing more than maxMessageBytes is passed on at once (with what is pending), so
 * connect-es refuses it before its body arrives; the rest of the body then goes on untouched.
 */

const HEADER_BYTES = 5;
/** The smallest chunk passed on as it is; smaller ones are joined up to this (HTTP/2's default frame size). */
export const MIN_PIECE_BYTES = 16 * 1024;

export async function* envelopeChunks(body: AsyncIterable<Uint8Array>, maxMessageBytes: number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const header = new Uint8Array(HEADER_BYTES);
  const headerView = new DataView(header.buffer);
  /** Header bytes of the current envelope seen so far (HEADER_BYTES: in its body). */
  let headerSeen = 0;
  /** Bytes of the current envelope's body still to come. */
  let bodyLeft = 0;
  const takePending = (): Uint8Array => {
    const joined = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return joined;
  };
  const it = body[Symbol.asyncIterator]();
  for (let next = await it.next(); !next.done; next = await it.next()) {
    const chunk = next.value;
    // Walk the chunk's envelope boundaries: does it end one (then it goes now), or announce too much?
    let endsEnvelope = false;
    let isTooLarge = false;
    for (let offset = 0; offset < chunk.byteLength; ) {
      if (headerSeen < HEADER_BYTES) {
        const take = Math.min(HEADER_BYTES - headerSeen, chunk.byteLength - offset);
        header.set(chunk.subarray(offset, offset + take), headerSeen);
        headerSeen += take;
        offset += take;
        if (headerSeen < HEADER_BYTES) break;
        bodyLeft = headerView.getUint32(1);
        if (bodyLeft > maxMessageBytes) {
          isTooLarge = true;
          break;
        }
      } else {
        const take = Math.min(bodyLeft, chunk.byteLength - offset);
        bodyLeft -= take;
        offset += take;
      }
      if (headerSeen === HEADER_BYTES && bodyLeft === 0) {
        endsEnvelope = true;
        headerSeen = 0;
      }
    }
    if (isTooLarge) {
      // connect-es answers resource_exhausted on this header; the rest is its to read (or not).
      if (pendingBytes > 0) yield takePending();
      yield chunk;
      for (let rest = await it.next(); !rest.done; rest = await it.next()) yield rest.value;
      return;
    }
    if (chunk.byteLength >= MIN_PIECE_BYTES) {
      if (pendingBytes > 0) yield takePending();
      yield chunk;
      continue;
    }
    pending.push(chunk);
    pendingBytes += chunk.byteLength;
    if (endsEnvelope || pendingBytes >= MIN_PIECE_BYTES) yield takePending();
  }
  // An incomplete envelope is passed on for connect-es to refuse ("incomplete envelope").
  if (pendingBytes > 0) yield takePending();
}

/** Content types whose body is a sequence of envelopes rather than one bare message. */
export function isEnveloped(contentType: string | null): boolean {
  return /^application\/(grpc|grpc-web|connect\+)/i.test(contentType ?? "");
}
