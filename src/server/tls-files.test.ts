/**
 * The server's TLS material is checked at start-up: files that cannot be read, a key that is not
 * the certificate's and an oversized CA stop the server with the variable's name; a CA that did not
 * issue the certificate, or a worker URL the certificate does not name, is a warning.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makeTestTls, type TestTls } from "../../test/fixtures/tls.js";
import { loadServerTls, MAX_CA_BYTES, tlsUrlWarning } from "./tls-files.js";

describe("loadServerTls", () => {
  let material: TestTls;
  before(() => {
    material = makeTestTls();
  });
  after(() => material.cleanup());

  it("reads a certificate, its key and the CA that issued it, with no warning", () => {
    const loaded = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath, caPath: material.caCertPath });
    assert.equal(loaded.caPem, material.caPem);
    assert.equal(loaded.cert, material.serverCertPem);
    assert.deepEqual(loaded.warnings, []);
  });

  it("without a CA, gives workers none (they use the system's roots)", () => {
    const loaded = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath });
    assert.equal(loaded.caPem, undefined);
  });

  it("warns when the CA did not issue the certificate", () => {
    const loaded = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath, caPath: material.otherCaCertPath });
    assert.match(loaded.warnings.join("\n"), /HODEI_TLS_CA did not issue HODEI_TLS_CERT/);
  });

  it("warns when the certificate has expired", () => {
    const loaded = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath }, new Date(Date.now() + 3 * 86_400_000));
    assert.match(loaded.warnings.join("\n"), /expired/);
  });

  it("refuses a key that is not the certificate's", () => {
    const otherKey = join(material.dir, "hodei-other-ca.key");
    assert.throws(() => loadServerTls({ certPath: material.serverCertPath, keyPath: otherKey }), /HODEI_TLS_CERT and HODEI_TLS_KEY do not make a TLS identity/);
  });

  it("refuses files it cannot read or that hold no certificate, naming the variable", () => {
    assert.throws(() => loadServerTls({ certPath: join(material.dir, "missing.crt"), keyPath: material.serverKeyPath }), /HODEI_TLS_CERT: cannot read .*missing\.crt/);
    assert.throws(() => loadServerTls({ certPath: material.serverCertPath, keyPath: join(material.dir, "missing.key") }), /HODEI_TLS_KEY: cannot read/);
    assert.throws(() => loadServerTls({ certPath: material.serverKeyPath, keyPath: material.serverKeyPath }), /HODEI_TLS_CERT: .* holds no PEM certificate/);
    assert.throws(
      () => loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath, caPath: material.serverKeyPath }),
      /HODEI_TLS_CA: .* holds no PEM certificate/,
    );
  });

  it("refuses a CA too large for the workers' environment", () => {
    const bundle = join(material.dir, "bundle.crt");
    writeFileSync(bundle, material.caPem.repeat(Math.ceil(MAX_CA_BYTES / material.caPem.length) + 1));
    assert.throws(() => loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath, caPath: bundle }), /HODEI_TLS_CA: .* give only the CA/);
  });
});

describe("tlsUrlWarning", () => {
  let material: TestTls;
  before(() => {
    material = makeTestTls();
  });
  after(() => material.cleanup());

  it("says nothing without TLS, or for a URL whose host the certificate names", () => {
    const serverTls = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath });
    assert.equal(tlsUrlWarning(undefined, "http://10.0.0.1:7070"), "");
    assert.equal(tlsUrlWarning(serverTls, "https://127.0.0.1:7070"), "");
    assert.equal(tlsUrlWarning(serverTls, "https://localhost:7070"), "");
  });

  it("warns about an http:// URL with TLS on, and a host the certificate does not name", () => {
    const serverTls = loadServerTls({ certPath: material.serverCertPath, keyPath: material.serverKeyPath });
    assert.match(tlsUrlWarning(serverTls, "http://127.0.0.1:7070"), /need an https:\/\/ URL/);
    assert.match(tlsUrlWarning(serverTls, "https://hodei.hodei.svc:7070"), /does not name hodei\.hodei\.svc/);
    assert.match(tlsUrlWarning(serverTls, "https://[::1]:7070"), /does not name ::1/);
  });
});
