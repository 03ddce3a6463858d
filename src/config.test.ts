/** The network edge settings: their defaults keep the 30 s contract, and inconsistent values are refused. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseServerConfig } from "./config.js";

describe("parseServerConfig: network edge", () => {
  it("defaults to limits that close a connection doing nothing within 30 s", () => {
    const { edge } = parseServerConfig({});
    assert.deepEqual(edge, {
      maxMessageBytes: 4 * 1024 * 1024,
      maxResponseMessageBytes: 64 * 1024 * 1024,
      sniffTimeoutMs: 10_000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 15_000,
      keepAliveTimeoutMs: 15_000,
      http2IdleTimeoutMs: 15_000,
      http2MaxConcurrentStreams: 100,
      maxConnections: 4096,
    });
    // Worst case for half a request: the sniff deadline, then the request timeout, plus Node's 1 s check period.
    assert.ok(edge.sniffTimeoutMs + edge.requestTimeoutMs + 1000 <= 30_000);
    assert.ok(edge.sniffTimeoutMs + edge.http2IdleTimeoutMs <= 30_000);
  });

  it("refuses a headers timeout longer than the request timeout, naming both", () => {
    assert.throws(() => parseServerConfig({ HODEI_HEADERS_TIMEOUT_MS: "20000", HODEI_REQUEST_TIMEOUT_MS: "10000" }), /HODEI_HEADERS_TIMEOUT_MS.*HODEI_REQUEST_TIMEOUT_MS/);
  });

  it("refuses message limits below what valid jobs and log batches need", () => {
    assert.throws(() => parseServerConfig({ HODEI_MAX_MESSAGE_BYTES: "65536" }), /HODEI_MAX_MESSAGE_BYTES/);
    assert.throws(() => parseServerConfig({ HODEI_MAX_RESPONSE_MESSAGE_BYTES: "1048576" }), /HODEI_MAX_RESPONSE_MESSAGE_BYTES/);
  });
});
