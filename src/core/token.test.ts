import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { hashToken, isApiKeyShaped, mintApiKey, mintOtpToken, mintSessionToken } from "./token.js";

describe("OTP and session tokens", () => {
  it("are prefixed so that a leaked secret is recognisable, and carry 256 random bits", () => {
    const otp = mintOtpToken();
    const session = mintSessionToken();
    assert.match(otp, /^hodei_otp_[A-Za-z0-9_-]{43}$/);
    assert.match(session, /^hodei_ses_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(otp.slice("hodei_otp_".length), "base64url").length, 32);
  });

  it("are random: a thousand of them are all distinct", () => {
    const tokens = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      tokens.add(mintOtpToken());
      tokens.add(mintSessionToken());
    }
    assert.equal(tokens.size, 2000);
  });
});

describe("API keys", () => {
  it("are prefixed hodei_key_ and carry 256 random bits, like OTP tokens", () => {
    const key = mintApiKey();
    assert.match(key, /^hodei_key_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(key.slice("hodei_key_".length), "base64url").length, 32);
    assert.notEqual(mintApiKey(), key);
  });

  it("are recognised by shape; OTP tokens, sessions and truncated keys are not keys", () => {
    assert.equal(isApiKeyShaped(mintApiKey()), true);
    assert.equal(isApiKeyShaped(mintOtpToken()), false);
    assert.equal(isApiKeyShaped(mintSessionToken()), false);
    assert.equal(isApiKeyShaped(mintApiKey().slice(0, -1)), false);
    assert.equal(isApiKeyShaped(`${mintApiKey()}\n`), false);
  });
});

describe("hashToken", () => {
  it("is the SHA-256 of the token as 64 lowercase hex digits", () => {
    // The NIST test vector for "abc".
    assert.equal(hashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const token = mintOtpToken();
    assert.match(hashToken(token), /^[0-9a-f]{64}$/);
    assert.equal(hashToken(token), createHash("sha256").update(token, "utf8").digest("hex"));
  });

  it("is stable: the same token always hashes the same, across processes and releases", () => {
    const token = mintOtpToken();
    assert.equal(hashToken(token), hashToken(token));
    // A stored hash must still match after a restart or an upgrade: pin one value.
    assert.equal(hashToken("hodei_otp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "0f6a830a1f7518e1776e934c6bce7e80b5adf7a092fbadd0734eb5d230a89042");
  });

  it("tells different tokens apart", () => {
    const token = mintOtpToken();
    assert.notEqual(hashToken(token), hashToken(`${token}x`));
    assert.notEqual(hashToken(token), hashToken(mintOtpToken()));
  });

  it("never equals or contains the secret it hashes", () => {
    for (const token of [mintOtpToken(), mintSessionToken()]) {
      const hash = hashToken(token);
      assert.notEqual(hash, token);
      assert.equal(hash.includes(token.slice("hodei_otp_".length)), false);
      assert.equal(hash.startsWith("hodei_"), false);
    }
  });
});
