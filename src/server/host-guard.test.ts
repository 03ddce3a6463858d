/** Which Host headers a server without authentication serves (host-guard.ts). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hostOfHeader, isLocalHostHeader } from "./host-guard.js";

describe("isLocalHostHeader", () => {
  it("accepts loopback addresses and names, *.localhost and this machine's name, with or without a port", () => {
    for (const host of ["127.0.0.1", "127.0.0.1:7070", "127.8.9.10:1", "localhost", "LOCALHOST:7070", "localhost.", "[::1]", "[::1]:7070", "dash.localhost:7070", "myhost:7070", "MyHost"]) {
      assert.equal(isLocalHostHeader(host, "myhost"), true, host);
    }
  });

  it("refuses any other name, lookalikes included, and a missing Host", () => {
    for (const host of [undefined, "", "attacker.example", "attacker.example:7070", "127.0.0.1.attacker.example", "localhost.attacker.example:7070", "localhostx", "[::2]:7070", "10.0.0.1", "myhost.attacker.example"]) {
      assert.equal(isLocalHostHeader(host, "myhost"), false, String(host));
    }
  });

  it("hostOfHeader strips the port and the brackets", () => {
    assert.equal(hostOfHeader("[::1]:7070"), "::1");
    assert.equal(hostOfHeader("a.b:80"), "a.b");
    assert.equal(hostOfHeader("a.b"), "a.b");
  });
});
