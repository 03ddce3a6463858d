import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { transientDatabaseError } from "./database-errors.js";

describe("transient database errors", () => {
  it("names SQLite's lock busy", () => {
    assert.equal(transientDatabaseError({ code: "SQLITE_BUSY" }), "busy");
    assert.equal(transientDatabaseError({ code: "SQLITE_BUSY_SNAPSHOT" }), "busy");
  });

  it("names PostgreSQL's unreachable, overloaded, shutting-down and conflict failures unavailable", () => {
    for (const code of ["40001", "40P01", "55P03", "57014", "53300", "57P01", "57P03", "08006", "ECONNREFUSED", "ECONNRESET"]) {
      assert.equal(transientDatabaseError({ code, message: "x" }), "unavailable", code);
    }
    assert.equal(transientDatabaseError(new Error("Connection terminated unexpectedly")), "unavailable");
    assert.equal(transientDatabaseError(new Error("timeout exceeded when trying to connect")), "unavailable");
  });

  it("leaves everything else alone: a constraint, a syntax error, a bug", () => {
    for (const code of ["23505", "42601", "22003", undefined]) assert.equal(transientDatabaseError({ code, message: "x" }), null, String(code));
    assert.equal(transientDatabaseError(new TypeError("x is undefined")), null);
    assert.equal(transientDatabaseError(null), null);
  });
});
