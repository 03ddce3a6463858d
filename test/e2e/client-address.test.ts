/**
 * The client address a handler sees, through the real listener of a real server process: over
 * HTTP/2 (gRPC, handed to the HTTP/2 server through listener.ts's replaying duplex, where the
 * address is read from a Node-internal field; see server/client-address.ts) and over HTTP/1.1
 * (Connect JSON). The Register limiter is what reports it: stopping the server logs the window in
 * progress of every address with refused Registers.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkerService } from "../../src/gen/hodei/v1/worker_pb.js";
import { type ServerProcess, startServerProcess } from "./harness.js";

const LINE = "register calls refused for their OTP token from one address";

/** A Connect JSON Register over HTTP/1.1 from `localAddress`; resolves with the HTTP status and body. */
function registerOverHttp1(port: number, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, localAddress, method: "POST", path: "/hodei.v1.WorkerService/Register", headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ otpToken: "hodei_otp_wrong", hostname: "h", agentVersion: "test", instanceKey: "k" }));
  });
}

describe("the client address, through the real listener", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess({ HODEI_LOCAL_WARM_WORKERS: "0" });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  it("is the connection's remote address on HTTP/2 and on HTTP/1.1", async () => {
    // http2.connect hands its options to net.connect, which binds to localAddress.
    const nodeOptions: http2.ClientSessionOptions & { localAddress: string } = { localAddress: "127.0.0.2" };
    const grpc = createClient(WorkerService, createGrpcTransport({ baseUrl: server.url, nodeOptions }));
    for (let i = 0; i < 3; i++) {
      const err = await grpc.register({ otpToken: "hodei_otp_wrong", hostname: "h", agentVersion: "test", instanceKey: "k" }).then(
        () => assert.fail("a wrong token registered"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.Unauthenticated);
    }
    const h1 = await registerOverHttp1(server.port, "127.0.0.3");
    assert.equal(h1.status, 401, h1.body);

    assert.equal(await server.stop(), 0);
    const lines = server.output.filter((l) => l.includes(LINE)).map((l) => JSON.parse(l) as { clientAddress: string; failures: number; level: number });
    assert.deepEqual(
      lines.map((l) => [l.clientAddress, l.failures, l.level]).sort(),
      [
        ["127.0.0.2", 3, 40],
        ["127.0.0.3", 1, 40],
      ],
    );
  });
});
