/** The agent's CA: given as PEM text by the server, as a file by hand, or both; none means system roots. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readTlsCa } from "./tls-ca.js";

describe("readTlsCa", () => {
  it("is undefined without HODEI_TLS_CA_PEM or HODEI_TLS_CA (the system's roots verify)", () => {
    assert.equal(readTlsCa({}), undefined);
  });

  it("trusts the PEM text the server passed and the file given by hand", () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-agent-ca-"));
    try {
      writeFileSync(join(dir, "ca.crt"), "FILE PEM");
      assert.deepEqual(readTlsCa({ HODEI_TLS_CA_PEM: "ENV PEM" }), ["ENV PEM"]);
      assert.deepEqual(readTlsCa({ HODEI_TLS_CA_PEM: "ENV PEM", HODEI_TLS_CA: join(dir, "ca.crt") }), ["ENV PEM", "FILE PEM"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails, naming the variable, when the file cannot be read", () => {
    assert.throws(() => readTlsCa({ HODEI_TLS_CA: "/nonexistent/ca.crt" }), /HODEI_TLS_CA: cannot read \/nonexistent\/ca\.crt/);
  });
});
