import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { acceptsCompression, createApiClients, createTransport } from "./transport.js";

/** The headers of each request a loopback HTTP server receives; every request is answered 404 (Connect's not_found). */
async function withHeaderRecorder(fn: (baseUrl: string, seen: http.IncomingHttpHeaders[]) => Promise<void>): Promise<void> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "not_found", message: "no such job" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe("client transport", () => {
  it("asks a server on loopback for uncompressed responses, unary and streaming", async () => {
    await withHeaderRecorder(async (baseUrl, seen) => {
      const { jobs } = createApiClients(createTransport({ baseUrl }));
      await assert.rejects(jobs.getJob({ id: "x" }), /no such job/);
      await assert.rejects(async () => {
        for await (const _ of jobs.getLogs({ jobId: "x" })) {
          // nothing: the answer is an error
        }
      });
      assert.equal(seen.length, 2);
      for (const headers of seen) {
        assert.equal(headers["accept-encoding"], undefined, JSON.stringify(headers));
        assert.equal(headers["connect-accept-encoding"], undefined, JSON.stringify(headers));
      }
    });
  });

  it("asks other servers for gzip or brotli", () => {
    for (const url of ["http://127.0.0.1:7070", "http://127.1.2.3:7070", "http://localhost:7070", "http://[::1]:7070"]) {
      assert.equal(acceptsCompression(new URL(url)), false, url);
    }
    for (const url of ["https://hodei.example.com", "http://10.0.0.5:7070", "http://[2001:db8::1]:7070", "http://128.0.0.1:7070"]) {
      assert.equal(acceptsCompression(new URL(url)), true, url);
    }
  });
});
