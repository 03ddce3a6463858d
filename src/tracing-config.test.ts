import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseServerConfig } from "./config.js";
import { parseTracingConfig } from "./tracing-config.js";

describe("tracing configuration (OTEL_*)", () => {
  it("is off without an endpoint, with an empty one, and with OTEL_SDK_DISABLED=true", () => {
    assert.equal(parseServerConfig({}).tracing, undefined);
    assert.equal(parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "" }), undefined);
    assert.equal(parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }), undefined);
  });

  it("posts to <endpoint>/v1/traces, or to the traces endpoint as given, as service hodei by default", () => {
    assert.deepEqual(parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }), { url: "http://collector:4318/v1/traces", headers: {}, serviceName: "hodei" });
    const both = parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://b/custom", OTEL_SERVICE_NAME: "ci" });
    assert.equal(both?.url, "https://b/custom");
    assert.equal(both?.serviceName, "ci");
  });

  it("reads headers as name=value pairs with URL-encoded values", () => {
    const config = parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: "Authorization=Bearer%20abc, x-team = ci" });
    assert.deepEqual(config?.headers, { authorization: "Bearer abc", "x-team": "ci" });
  });

  it("refuses what it cannot honour, naming the variable", () => {
    const refused = [
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://c" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_PROTOCOL"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf" }, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: "novalue" }, "OTEL_EXPORTER_OTLP_HEADERS"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: "a=%zz" }, "OTEL_EXPORTER_OTLP_HEADERS"],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: `a=${"x".repeat(10_000)}` }, "OTEL_EXPORTER_OTLP_HEADERS"],
    ] as const;
    for (const [env, name] of refused) {
      assert.throws(() => parseTracingConfig(env), (err: Error) => err.message.startsWith("invalid configuration") && err.message.includes(name), JSON.stringify(env).slice(0, 80));
    }
    assert.equal(parseTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })?.url, "http://c/v1/traces");
  });
});
