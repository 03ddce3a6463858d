/** The CLI's words for TLS failures, found by Node's error code anywhere in the cause chain. */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, it } from "node:test";
import { describeTlsFailure } from "./tls-errors.js";

function failure(code: string, message: string): ConnectError {
  const cause = Object.assign(new Error(message), { code });
  return new ConnectError(message, Code.Unknown, undefined, undefined, cause);
}

describe("describeTlsFailure", () => {
  const url = "https://127.0.0.1:7070";

  it("tells a user whose CA does not verify the server to pass the right one", () => {
    for (const code of ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN", "DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]) {
      assert.match(describeTlsFailure(failure(code, "x"), url) ?? "", /cannot verify the TLS certificate of the Hodei server at https:\/\/127\.0\.0\.1:7070 .*--ca-cert FILE or HODEI_TLS_CA/);
    }
  });

  it("names an expired certificate, a certificate for another host, and a server without TLS", () => {
    assert.match(describeTlsFailure(failure("CERT_HAS_EXPIRED", "certificate has expired"), url) ?? "", /not valid now \(certificate has expired\)/);
    assert.match(describeTlsFailure(failure("ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match"), url) ?? "", /does not name the host/);
    assert.match(describeTlsFailure(failure("EPROTO", "ssl3_get_record:wrong version number"), url) ?? "", /does not speak TLS .*use an http:\/\/ URL/);
  });

  it("leaves every other failure to the caller", () => {
    assert.equal(describeTlsFailure(failure("ECONNREFUSED", "connect ECONNREFUSED"), url), undefined);
    assert.equal(describeTlsFailure(new ConnectError("not found", Code.NotFound), url), undefined);
  });
});
