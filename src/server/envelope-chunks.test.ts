/** envelopeChunks: the body unchanged, large chunks not copied, small ones joined, no message held back, linear cost. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { transformSplitEnvelope } from "@connectrpc/connect/protocol";
import { envelopeChunks, isEnveloped, MIN_PIECE_BYTES } from "./envelope-chunks.js";

function envelope(flags: number, data: string | Buffer): Buffer {
  const body = typeof data === "string" ? Buffer.from(data) : data;
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

async function* chunks(bytes: Buffer, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function* fromList(list: Uint8Array[]) {
  yield* list;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of it) out.push(chunk);
  return out;
}

/** The messages connect-es's own decoder reads from the chunks. */
async function decoded(it: AsyncIterable<Uint8Array>, max = 1 << 20): Promise<string[]> {
  const out: string[] = [];
  for await (const env of transformSplitEnvelope(max)(it)) out.push(`${env.flags}:${Buffer.from(env.data).toString()}`);
  return out;
}

describe("envelopeChunks", () => {
  const three = [envelope(0, "hello"), envelope(0, ""), envelope(2, "x".repeat(300))];
  const stream = Buffer.concat(three);
  const expected = ["0:hello", "0:", `2:${"x".repeat(300)}`];

  for (const size of [1, 2, 5, 7, 64, 1000]) {
    it(`passes the body on unchanged, and decodable, when it comes in ${size}-byte chunks`, async () => {
      const out = await collect(envelopeChunks(chunks(stream, size), 1024));
      assert.deepEqual(Buffer.concat(out), stream);
      assert.deepEqual(await decoded(fromList(out)), expected);
    });
  }

  it("passes on a chunk that ends an envelope at once, without waiting for more", async () => {
    let release: () => void = () => {};
    const source = (async function* () {
      yield three[0].subarray(0, 3);
      yield three[0].subarray(3);
      await new Promise<void>((resolve) => (release = resolve));
    })();
    const it = envelopeChunks(source, 1024)[Symbol.asyncIterator]();
    const first = await it.next();
    assert.deepEqual(Buffer.from(first.value as Uint8Array), three[0]);
    const second = it.next();
    await new Promise((resolve) => setImmediate(resolve));
    release();
    assert.equal((await second).done, true);
  });

  it("passes a large chunk on as it is (no copy), after joining what was pending", async () => {
    const big = envelope(0, Buffer.alloc(64 * 1024, "b"));
    const parts = [big.subarray(0, 2), big.subarray(2, 7), big.subarray(7, 7 + MIN_PIECE_BYTES), big.subarray(7 + MIN_PIECE_BYTES)];
    const out = await collect(envelopeChunks(fromList(parts), 1 << 20));
    assert.equal(out.length, 3);
    assert.deepEqual(Buffer.from(out[0]), big.subarray(0, 7));
    assert.equal(out[1], parts[2]);
    assert.equal(out[2], parts[3]);
  });

  it("joins small chunks up to MIN_PIECE_BYTES within an envelope", async () => {
    const one = envelope(0, "z".repeat(100_000));
    const out = await collect(envelopeChunks(chunks(one, 100), 1 << 20));
    assert.deepEqual(Buffer.concat(out), one);
    for (const piece of out.slice(0, -1)) assert.ok(piece.byteLength >= MIN_PIECE_BYTES, `a piece of ${piece.byteLength} bytes`);
  });

  it("hands the decoder an envelope in at most 2 * size / MIN_PIECE_BYTES + 2 chunks, small and large chunks alternating", async () => {
    const size = 1 << 20;
    const one = envelope(0, Buffer.alloc(size, "q"));
    const parts: Buffer[] = [];
    for (let i = 0; i < one.length; ) {
      const take = parts.length % 2 === 0 ? 1 : MIN_PIECE_BYTES;
      parts.push(one.subarray(i, i + take));
      i += take;
    }
    const out = await collect(envelopeChunks(fromList(parts), 2 << 20));
    assert.deepEqual(Buffer.concat(out), one);
    assert.ok(out.length <= (2 * size) / MIN_PIECE_BYTES + 2, `${out.length} chunks`);
  });

  it("passes an incomplete last envelope on as it is", async () => {
    const cut = stream.subarray(0, stream.length - 10);
    const out = await collect(envelopeChunks(chunks(cut, 3), 1024));
    assert.deepEqual(Buffer.concat(out), cut);
    await assert.rejects(decoded(fromList(out)), /premature end|incomplete/i);
  });

  it("passes a header announcing more than the limit on at once, then the rest untouched", async () => {
    const big = envelope(0, "y".repeat(100));
    const out = await collect(envelopeChunks(chunks(big, 10), 50));
    assert.deepEqual(Buffer.from(out[0]), big.subarray(0, 10));
    assert.deepEqual(Buffer.concat(out), big);
    await assert.rejects(decoded(fromList(out), 50), /message size 100 is larger than configured readMaxBytes 50/);
  });

  it("keeps connect-es's envelope decoder cheap on 100,000 one-byte chunks", async () => {
    // Straight into transformSplitEnvelope this costs minutes of CPU (it re-sums every pending
    // chunk on each new chunk). CPU time, not wall time, so that a busy machine does not fail it.
    const one = envelope(0, "z".repeat(100_000));
    const cpuBefore = process.cpuUsage();
    let messages = 0;
    for await (const env of transformSplitEnvelope(1_000_000)(envelopeChunks(chunks(one, 1), 1_000_000))) {
      assert.equal(env.data.byteLength, 100_000);
      messages++;
    }
    const cpu = process.cpuUsage(cpuBefore);
    assert.equal(messages, 1);
    assert.ok(cpu.user + cpu.system < 5_000_000, `took ${(cpu.user + cpu.system) / 1000} ms of CPU`);
  });
});

describe("isEnveloped", () => {
  it("tells enveloped content types from bare unary ones", () => {
    for (const type of ["application/grpc", "application/grpc+proto", "application/grpc-web+proto", "application/connect+json"]) assert.ok(isEnveloped(type), type);
    for (const type of ["application/json", "application/proto", "", null]) assert.ok(!isEnveloped(type), String(type));
  });
});
