import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "./errors.js";
import { grants, parseScopes, providerScope } from "./scopes.js";

describe("parseScopes", () => {
  it("reads repeated and comma-separated entries, drops duplicates and blanks, in canonical order", () => {
    assert.deepEqual(parseScopes(["provider:local, submit", "submit", " ", "read"]), ["read", "submit", "provider:local"]);
  });

  it("refuses an unknown scope, naming it and listing the known ones", () => {
    assert.throws(
      () => parseScopes(["read", "provider:mars"]),
      (err: Error) => err instanceof InvalidInputError && /"provider:mars"/.test(err.message) && /read, submit, admin, provider:local/.test(err.message),
    );
    assert.throws(() => parseScopes(["Admin"]), /unknown scope "Admin"/);
  });

  it("refuses an empty list", () => {
    assert.throws(() => parseScopes([]), /at least one/);
    assert.throws(() => parseScopes([" , "]), /at least one/);
  });
});

describe("grants", () => {
  it("grants what the list holds and nothing else", () => {
    assert.equal(grants(["read"], "read"), true);
    assert.equal(grants(["read"], "submit"), false);
    assert.equal(grants(["submit"], "provider:local"), false);
    assert.equal(grants(["submit", "provider:docker"], "provider:local"), false);
    assert.equal(grants([], "read"), false);
  });

  it("grants everything to admin", () => {
    for (const scope of ["read", "submit", "admin", "provider:local", "provider:docker", "provider:kubernetes"] as const) {
      assert.equal(grants(["admin"], scope), true, scope);
    }
  });
});

describe("providerScope", () => {
  it("names the provider's scope, and refuses a provider that does not exist", () => {
    assert.equal(providerScope("kubernetes"), "provider:kubernetes");
    assert.throws(() => providerScope("mars"), /unknown provider "mars"/);
  });
});
