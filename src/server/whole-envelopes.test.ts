/** wholeEnvelopes: one chunk per envelope however the body is cut, and linear cost for tiny chunks. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { transformSplitEnvelope } from "@connectrpc/connect/protocol";
import { isEnveloped, wholeEnvelopes } from "./whole-envelopes.js";

function envelope(flags: number, data: string): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(Buffer.byteLength(data), 1);
  return Buffer.concat([head, Buffer.from(data)]);
}

async function* chunks(bytes: Buffer, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of it) out.push(Buffer.from(chunk).toString("hex"));
  return out;
}

describe("wholeEnvelopes", () => {
  const three = [envelope(0, "hello"), envelope(0, ""), envelope(2, "x".repeat(300))];
  const stream = Buffer.concat(three);

  for (const size of [1, 2, 5, 7, 64, 1000]) {
    it(`yields one chunk per envelope when the body comes in ${size}-byte chunks`, async () => {
      assert.deepEqual(await collect(wholeEnvelopes(chunks(stream, size), 1024)), three.map((e) => e.toString("hex")));
    });
  }

  it("passes an incomplete last envelope on as it is", async () => {
    const cut = stream.subarray(0, stream.length - 10);
    const out = await collect(wholeEnvelopes(chunks(cut, 3), 1024));
    assert.deepEqual(out.slice(0, 2), three.slice(0, 2).map((e) => e.toString("hex")));
    assert.equal(out[2], three[2].subarray(0, three[2].length - 10).toString("hex"));
  });

  it("passes a header announcing more than the limit on at once, then the rest untouched", async () => {
    const big = envelope(0, "y".repeat(100));
    const out = await collect(wholeEnvelopes(chunks(big, 10), 50));
    assert.equal(out[0], big.subarray(0, 10).toString("hex"));
    assert.equal(out.join(""), big.toString("hex"));
  });

  it("keeps connect-es's envelope decoder cheap on 100,000 one-byte chunks", async () => {
    // Straight into transformSplitEnvelope this costs minutes of CPU (it re-sums every pending
    // chunk on each new chunk). CPU time, not wall time, so that a busy machine does not fail it.
    const one = envelope(0, "z".repeat(100_000));
    const cpuBefore = process.cpuUsage();
    let messages = 0;
    for await (const env of transformSplitEnvelope(1_000_000)(wholeEnvelopes(chunks(one, 1), 1_000_000))) {
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
