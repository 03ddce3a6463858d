/**
 * AgentHeaders against Node's own Headers (undici's, the standard's behaviour): the same
 * operations give the same results and the same refusals.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AgentHeaders } from "./headers.js";

type AnyHeaders = { append(n: string, v: string): void; set(n: string, v: string): void; delete(n: string): void; has(n: string): boolean; get(n: string): string | null; getSetCookie(): string[]; forEach(cb: (v: string, k: string) => void): void; entries(): IterableIterator<[string, string]> };

function exercise(make: (init?: unknown) => AnyHeaders) {
  const h = make([["Content-Type", "application/grpc"], ["X-Multi", "a"]]);
  h.append("x-multi", " b ");
  h.append("Set-Cookie", "a=1");
  h.append("set-cookie", "b=2");
  h.set("Grpc-Timeout", "5000m");
  h.delete("content-type");
  const seen: string[] = [];
  h.forEach((v, k) => seen.push(`${k}=${v}`));
  return {
    entries: [...h.entries()],
    seen,
    get: [h.get("X-MULTI"), h.get("content-type"), h.get("grpc-timeout")],
    has: [h.has("Set-Cookie"), h.has("content-type")],
    cookies: h.getSetCookie(),
    fromRecord: [...make({ B: "2", a: "1" }).entries()],
    fromHeaders: [...make(h).entries()],
    empty: [...make().entries()],
  };
}

describe("AgentHeaders", () => {
  it("behaves as Node's Headers for the operations an RPC client uses", () => {
    assert.deepEqual(exercise((init) => new AgentHeaders(init as never)), exercise((init) => new Headers(init as ConstructorParameters<typeof Headers>[0]) as unknown as AnyHeaders));
  });

  it("refuses what Node's Headers refuses: a bad name, a value with a line break, a pair that is not a pair", () => {
    for (const make of [(i?: unknown) => new AgentHeaders(i as never), (i?: unknown) => new Headers(i as ConstructorParameters<typeof Headers>[0])]) {
      assert.throws(() => make().append("bad name", "x"), TypeError);
      assert.throws(() => make().set("x-ok", "a\r\nb"), TypeError);
      assert.throws(() => make([["only-name"]]), TypeError);
    }
  });
});
