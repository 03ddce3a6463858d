import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AlreadyExistsError, HodeiError, InvalidArgumentError, NotFoundError, PermissionDeniedError, toHodeiError, UnauthenticatedError, UnavailableError } from "./errors.js";

describe("toHodeiError", () => {
  it("gives the codes a caller branches on their own class, with the server's words and the Connect code", () => {
    const cases = [
      [Code.NotFound, NotFoundError, "not_found"],
      [Code.InvalidArgument, InvalidArgumentError, "invalid_argument"],
      [Code.Unauthenticated, UnauthenticatedError, "unauthenticated"],
      [Code.PermissionDenied, PermissionDeniedError, "permission_denied"],
      [Code.AlreadyExists, AlreadyExistsError, "already_exists"],
      [Code.Unavailable, UnavailableError, "unavailable"],
    ] as const;
    for (const [code, Class, name] of cases) {
      const err = toHodeiError(new ConnectError("the server's words", code));
      assert.ok(err instanceof Class, name);
      assert.ok(err instanceof HodeiError);
      assert.equal(err.code, name);
      assert.equal(err.message, "the server's words");
    }
    const other = toHodeiError(new ConnectError("", Code.ResourceExhausted));
    assert.equal(other.constructor, HodeiError);
    assert.equal(other.code, "resource_exhausted");
    assert.equal(other.message, "resource_exhausted");
  });

  it("keeps the cause chain down to Node's error, and passes a HodeiError through", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" });
    const err = toHodeiError(new ConnectError("connect ECONNREFUSED", Code.Unavailable, undefined, undefined, refused));
    assert.equal((err.cause as ConnectError).cause, refused);
    assert.equal(toHodeiError(err), err);
    assert.equal(toHodeiError(new Error("boom")).code, "unknown");
  });
});
