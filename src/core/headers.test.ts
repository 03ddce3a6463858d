/**
 * The bundles' Headers (headers.ts) against Node's own: the same operations on both give the same
 * entries, the same answers and the same refusals.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Headers as OurHeaders } from "./headers.js";

type AnyHeaders = OurHeaders | globalThis.Headers;
type Op = (h: AnyHeaders) => unknown;

/** Runs op on a fresh pair built from init and compares what each returns, throws and holds. */
function same(init: ConstructorParameters<typeof globalThis.Headers>[0], ...ops: Op[]): void {
  const outcome = (make: () => AnyHeaders) => {
    let h: AnyHeaders;
    try {
      h = make();
    } catch (err) {
      return { threw: (err as Error).constructor.name };
    }
    const results = ops.map((op) => {
      try {
        return { value: op(h) };
      } catch (err) {
        return { threw: (err as Error).constructor.name };
      }
    });
    return { results, entries: [...h], setCookie: h.getSetCookie() };
  };
  const ours = outcome(() => new OurHeaders(init as never));
  const node = outcome(() => new globalThis.Headers(init));
  assert.deepEqual(ours, node, JSON.stringify(init));
}

describe("Headers (the bundles' own)", () => {
  it("builds from a record, an array of pairs and another Headers as Node's does", () => {
    same(undefined);
    same({ "Content-Type": "application/proto", "x-B": " padded\t", "x-a": "1" });
    same([["X-Dup", "1"], ["x-dup", "2"], ["Set-Cookie", "a=1"], ["set-cookie", "b=2"], ["accept", "*/*"]]);
    same(new globalThis.Headers([["A", "1"], ["b", "2"]]));
    assert.deepEqual([...new OurHeaders(new OurHeaders({ A: "1", b: "2" }))], [["a", "1"], ["b", "2"]]);
  });

  it("answers get, has, set, append and delete alike, names in any case", () => {
    same(
      { Authorization: "Bearer x" },
      (h) => h.get("authorization"),
      (h) => h.has("AUTHORIZATION"),
      (h) => h.get("missing"),
      (h) => h.append("Accept-Encoding", "gzip"),
      (h) => h.append("accept-encoding", "br"),
      (h) => h.get("Accept-Encoding"),
      (h) => h.set("ACCEPT-ENCODING", "identity"),
      (h) => h.get("accept-encoding"),
      (h) => h.append("set-cookie", "a=1, b"),
      (h) => h.append("Set-Cookie", "c=2"),
      (h) => h.get("set-cookie"),
      (h) => h.delete("Authorization"),
      (h) => h.has("authorization"),
    );
  });

  it("iterates sorted by name with forEach, keys, values and entries alike", () => {
    const init: [string, string][] = [["zeta", "z"], ["Alpha", "a"], ["set-cookie", "s1"], ["mid", "m1"], ["MID", "m2"], ["Set-Cookie", "s2"]];
    same(
      init,
      (h) => [...h.keys()],
      (h) => [...h.values()],
      (h) => [...h.entries()],
      (h) => {
        const seen: string[] = [];
        h.forEach((value, name) => seen.push(`${name}=${value}`));
        return seen;
      },
      (h) => Object.prototype.toString.call(h),
    );
  });

  it("refuses the names and values Node refuses, and trims HTTP whitespace from values", () => {
    for (const name of ["", "bad name", "bad:name", "ümlaut", "a\nb", "(x)"]) same([[name, "v"]]);
    for (const value of ["a\nb", "a\rb", "a\0b", "  \t trimmed \r\n", "", "tab\tinside", "ok"]) same([["x", value]]);
    same({}, (h) => h.set("x", "a\nb"), (h) => h.append("bad name", "v"), (h) => h.get("bad name"), (h) => h.has("a b"), (h) => h.delete("a b"));
    same([["only-one"]] as unknown as [string, string][]);
    same([["a", "b", "c"]] as unknown as [string, string][]);
  });

  it("turns values that are not strings into strings as Node does", () => {
    same({ n: 1 as unknown as string }, (h) => h.append("b", true as unknown as string), (h) => h.set("u", undefined as unknown as string));
  });
});
