import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keyIdOf, SecretBox, SecretOpenError } from "./secret-box.js";

const KEY = Buffer.alloc(32, 0x11);
const VALUE = "hunter2-correct-horse";

describe("SecretBox", () => {
  it("opens what it sealed, and the sealed form holds neither the value nor its base64", () => {
    const box = new SecretBox(KEY);
    const sealed = box.seal("job-1", "API_TOKEN", VALUE);
    assert.equal(box.open("job-1", sealed), VALUE);
    assert.equal(sealed.name, "API_TOKEN");
    assert.equal(sealed.nonce.length, 12);
    assert.equal(sealed.ciphertext.length, Buffer.byteLength(VALUE) + 16, "the value and a 16-byte GCM tag");
    for (const form of [VALUE, Buffer.from(VALUE).toString("base64")]) {
      assert.ok(!sealed.ciphertext.includes(form) && !sealed.nonce.includes(form));
    }
  });

  it("uses a fresh random nonce per value: the same value sealed twice looks unrelated", () => {
    const box = new SecretBox(KEY);
    const a = box.seal("job-1", "A", VALUE);
    const b = box.seal("job-1", "A", VALUE);
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
  });

  it("takes its nonces from the injected source", () => {
    const nonce = Buffer.alloc(12, 9);
    const box = new SecretBox(KEY, () => Buffer.from(nonce));
    assert.deepEqual(box.seal("j", "A", VALUE).nonce, nonce);
  });

  it("refuses to open a value as another job's or under another name (the associated data)", () => {
    const box = new SecretBox(KEY);
    const sealed = box.seal("job-1", "API_TOKEN", VALUE);
    assert.throws(() => box.open("job-2", sealed), SecretOpenError);
    assert.throws(() => box.open("job-1", { ...sealed, name: "OTHER" }), SecretOpenError);
  });

  it("refuses a changed ciphertext, nonce or tag", () => {
    const box = new SecretBox(KEY);
    const sealed = box.seal("job-1", "A", VALUE);
    for (const field of ["ciphertext", "nonce"] as const) {
      for (const at of [0, sealed[field].length - 1]) {
        const changed = Buffer.from(sealed[field]);
        changed[at] ^= 1;
        assert.throws(() => box.open("job-1", { ...sealed, [field]: changed }), SecretOpenError, `${field}[${at}]`);
      }
    }
    assert.throws(() => box.open("job-1", { ...sealed, ciphertext: sealed.ciphertext.subarray(0, 10) }), SecretOpenError);
  });

  it("says when a value was sealed with another key, naming the job and the secret but never the value", () => {
    const sealed = new SecretBox(Buffer.alloc(32, 0x22)).seal("job-1", "API_TOKEN", VALUE);
    assert.throws(
      () => new SecretBox(KEY).open("job-1", sealed),
      (err: Error) => {
        assert.ok(err instanceof SecretOpenError);
        assert.match(err.message, /another server key/);
        assert.match(err.message, /API_TOKEN/);
        assert.match(err.message, /job-1/);
        assert.ok(!err.message.includes(VALUE));
        return true;
      },
    );
  });

  it("names a key by a fingerprint that is stable, differs between keys and is not the key", () => {
    assert.equal(keyIdOf(KEY), new SecretBox(KEY).keyId);
    assert.notEqual(keyIdOf(KEY), keyIdOf(Buffer.alloc(32, 0x22)));
    assert.match(keyIdOf(KEY), /^[0-9a-f]{16}$/);
    assert.ok(!KEY.toString("hex").includes(keyIdOf(KEY)));
  });

  it("refuses a key that is not 32 bytes", () => {
    assert.throws(() => new SecretBox(Buffer.alloc(16)), /32 bytes/);
  });
});
