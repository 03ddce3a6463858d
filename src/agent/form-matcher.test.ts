import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FormMatcher } from "./form-matcher.js";

/** Deterministic pseudo-random numbers (a test that fails must fail again). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

/** The ranges and open end as a plain search finds them: the oracle. */
function naive(forms: string[], text: string): { ranges: [number, number][]; openEndBytes: number } {
  const covered = new Array<boolean>(text.length).fill(false);
  for (const form of forms) {
    for (let at = text.indexOf(form); at >= 0; at = text.indexOf(form, at + 1)) for (let i = at; i < at + form.length; i++) covered[i] = true;
  }
  // Covered bytes in a row make one range: overlapping and touching occurrences join.
  const ranges: [number, number][] = [];
  for (let i = 0; i < text.length; i++) {
    if (!covered[i]) continue;
    const last = ranges.at(-1);
    if (last && last[1] === i) last[1] = i + 1;
    else ranges.push([i, i + 1]);
  }
  let openEndBytes = 0;
  for (const form of forms) {
    for (let k = Math.min(form.length - 1, text.length); k > openEndBytes; k--) {
      if (text.endsWith(form.slice(0, k))) {
        openEndBytes = k;
        break;
      }
    }
  }
  return { ranges, openEndBytes };
}

describe("FormMatcher", () => {
  it("finds every occurrence of every form, merged, and the open end, as a plain search does", () => {
    const rnd = random(11);
    const pick = (alphabet: string, length: number) => Array.from({ length }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join("");
    for (let round = 0; round < 500; round++) {
      const forms = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick("abc", 1 + Math.floor(rnd() * 5)));
      const text = pick("abcd", Math.floor(rnd() * 60));
      const scan = new FormMatcher(forms.map((f) => Buffer.from(f))).scan(Buffer.from(text));
      assert.deepEqual(scan, naive(forms, text), `forms ${JSON.stringify(forms)} in "${text}"`);
    }
  });

  it("costs the same per byte when output matches a form at every position", () => {
    const matcher = new FormMatcher([Buffer.from("a".repeat(4096))]);
    const scan = matcher.scan(Buffer.from("a".repeat(64 * 1024)));
    assert.deepEqual(scan.ranges, [[0, 64 * 1024]]);
    assert.equal(scan.openEndBytes, 4095);
  });

  it("matches bytes, not characters, and nothing without forms", () => {
    const matcher = new FormMatcher([Buffer.from([0xff, 0x00, 0xfe])]);
    assert.deepEqual(matcher.scan(Buffer.from([1, 0xff, 0x00, 0xfe, 2, 0xff])), { ranges: [[1, 4]], openEndBytes: 1 });
    assert.equal(new FormMatcher([]).isEmpty, true);
    assert.deepEqual(new FormMatcher([]).scan(Buffer.from("anything")), { ranges: [], openEndBytes: 0 });
  });
});
