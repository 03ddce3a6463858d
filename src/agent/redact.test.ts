import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MIN_SECRET_BYTES, Redactor, secretForms } from "./redact.js";

const SECRET = "hunter2-Zq9!";

/** Batch redaction of text. */
const redacted = (values: string[], text: string) => new Redactor(values).redactText(text);

/** Streams `pieces` through one StreamRedactor and returns everything it released, as text. */
function streamed(values: string[], pieces: (string | Buffer)[]): string {
  const stream = new Redactor(values).stream();
  const out = pieces.map((p) => stream.push(typeof p === "string" ? Buffer.from(p) : p));
  out.push(stream.end());
  return Buffer.concat(out).toString();
}

/** Deterministic pseudo-random numbers (a test that fails must fail again). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

describe("secretForms", () => {
  it("has the value, its base64 (standard, URL-safe, padded or not) and its URL encodings", () => {
    const forms = secretForms("p@ss w/rd?!").map((f) => f.toString("latin1"));
    const base64 = Buffer.from("p@ss w/rd?!").toString("base64");
    for (const expected of [
      "p@ss w/rd?!",
      base64,
      base64.replace(/=+$/, ""),
      Buffer.from("p@ss w/rd?!").toString("base64url"),
      "p%40ss%20w%2Frd%3F!",
      "p%40ss+w%2Frd%3F!",
      "p%40ss%20w%2Frd%3F%21",
      "p%40ss+w%2Frd%3F%21",
    ]) {
      assert.ok(forms.includes(expected), `has ${expected}`);
    }
    assert.equal(new Set(forms).size, forms.length, "no form twice");
  });

  it("has the base64 characters that only the value decides, at each of the three alignments in a longer stream", () => {
    const value = "correct horse battery";
    for (const prefix of ["", "a", "ab", "abc", "abcd"]) {
      for (const suffix of ["", "x", "xy", "xyz"]) {
        const encoded = Buffer.from(`${prefix}${value}${suffix}`).toString("base64");
        const text = redacted([value], `before ${encoded} after`);
        assert.doesNotMatch(text, /[A-Za-z0-9+/]{12,}/, `prefix "${prefix}", suffix "${suffix}": ${text}`);
        assert.match(text, /\*\*\*/);
      }
    }
  });

  it(`has no form for a value shorter than ${MIN_SECRET_BYTES} bytes (not redacted, like GitHub and GitLab)`, () => {
    assert.deepEqual(secretForms("abc"), []);
    assert.equal(redacted(["abc"], "abc abc"), "abc abc");
    assert.ok(secretForms("abcd").length > 0);
  });

  it("counts bytes, not characters: a 2-character value of 4 UTF-8 bytes is redacted", () => {
    assert.equal(redacted(["éé"], "xééx"), "x***x");
  });
});

describe("Redactor.redact", () => {
  it("replaces the value, its base64 and URL-encoded forms with ***", () => {
    const value = "s3cr3t/with space";
    const text = [value, Buffer.from(value).toString("base64"), encodeURIComponent(value), Buffer.from(value).toString("base64url")].join(" | ");
    assert.equal(redacted([value], text), "*** | *** | *** | ***");
  });

  it("redacts every occurrence of every secret, and overlapping ones as one", () => {
    assert.equal(redacted(["abcab", "zzzz"], "abcabcab-zzzz-abcab"), "***-***-***");
  });

  it("leaves output without a secret byte for byte, even when it is not UTF-8", () => {
    const data = Buffer.from([0x00, 0xff, 0xfe, 0x41, 0x0a]);
    assert.deepEqual(new Redactor([SECRET]).redact(data), data);
    assert.equal(new Redactor([]).isEmpty, true);
  });

  it("finds a secret among binary bytes", () => {
    const data = Buffer.concat([Buffer.from([0xff, 0x00]), Buffer.from(SECRET), Buffer.from([0xfe])]);
    assert.deepEqual([...new Redactor([SECRET]).redact(data)], [0xff, 0x00, 0x2a, 0x2a, 0x2a, 0xfe]);
  });
});

describe("StreamRedactor", () => {
  it("redacts a secret split across two pieces of output", () => {
    assert.equal(streamed([SECRET], ["token: hunt", "er2-Zq9!\n"]), "token: ***\n");
  });

  it("holds back only an end that may begin a secret, and releases it once more output proves otherwise", () => {
    const stream = new Redactor([SECRET]).stream();
    assert.equal(stream.push(Buffer.from("plain output\n")).toString(), "plain output\n", "nothing held without a possible start");
    assert.equal(stream.push(Buffer.from("a hun")).toString(), "a ");
    assert.equal(stream.heldBytes, 3);
    assert.equal(stream.push(Buffer.from("gry cat\n")).toString(), "hungry cat\n");
    assert.equal(stream.heldBytes, 0);
  });

  it("releases a held end at the end of the output", () => {
    assert.equal(streamed([SECRET], ["last words: hunter2-Zq"]), "last words: hunter2-Zq");
  });

  it("never holds back more than the longest form minus one byte", () => {
    const redactor = new Redactor([SECRET, "another-secret-value"]);
    const stream = redactor.stream();
    const rnd = random(7);
    const alphabet = "hunter2-Zq9!anothersecrtvl";
    for (let i = 0; i < 2000; i++) {
      const piece = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join("");
      stream.push(Buffer.from(piece));
      assert.ok(stream.heldBytes <= redactor.longestFormBytes - 1, `held ${stream.heldBytes}`);
    }
  });

  it("releases as much as batch redaction would, however the output is cut (up to repeated ***)", () => {
    const values = [SECRET, "abcab", "zzzz", "s p@ce/x"];
    const plants = [...values, ...values.map((v) => Buffer.from(v).toString("base64")), encodeURIComponent("s p@ce/x")];
    const rnd = random(42);
    const squash = (text: string) => text.replace(/(\*\*\*)+/g, "***");
    for (let round = 0; round < 300; round++) {
      let text = "";
      while (text.length < 200) text += rnd() < 0.3 ? plants[Math.floor(rnd() * plants.length)] : "abcxyz \n".slice(0, 1 + Math.floor(rnd() * 8));
      const pieces: string[] = [];
      for (let at = 0; at < text.length; ) {
        const size = 1 + Math.floor(rnd() * 12);
        pieces.push(text.slice(at, at + size));
        at += size;
      }
      const out = streamed(values, pieces);
      assert.equal(squash(out), squash(redacted(values, text)), `round ${round}: ${JSON.stringify(pieces)}`);
      assert.ok(!values.some((v) => out.includes(v)), `round ${round}: a value got through: ${out}`);
    }
  });

  it("sends a match the cut runs through as *** at once, and the rest of it never", () => {
    const stream = new Redactor(["abcab"]).stream();
    // "abcab" is complete, but its last "ab" may begin a second, overlapping "abcab".
    assert.equal(stream.push(Buffer.from("x abcab")).toString(), "x ***");
    assert.equal(stream.push(Buffer.from("!")).toString(), "!");
    assert.equal(stream.end().toString(), "");
  });

  it("passes output through untouched when there is no secret", () => {
    const data = Buffer.from("anything\n");
    assert.equal(new Redactor([]).stream().push(data), data);
  });
});
