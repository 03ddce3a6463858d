/**
 * Tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT, no injected processor), through a real server in
 * this process: no module of the OpenTelemetry SDK is ever loaded, a job without a traceparent has no trace
 * and its command no TRACEPARENT, and a caller's traceparent is still passed on to the command as
 * given (the command's spans join the caller's trace) and shown as the job's trace id.
 * This file must import nothing of OpenTelemetry: the check reads this process's module cache.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, it } from "node:test";
import { waitUntilSettled } from "../checks/settle.js";
import { type InProcessServer, logText, startInProcessServer } from "../../test/fixtures/in-process-server.js";

const CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/**
 * Modules of the OpenTelemetry SDK and exporter loaded in this process (they are CommonJS: an
 * import lands in require.cache). The API package itself (@opentelemetry/api, a no-op without an
 * SDK) is left out: prom-client loads it for /metrics whatever tracing does.
 */
function loadedOpenTelemetry(): string[] {
  return Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes("@opentelemetry") && !path.includes("@opentelemetry/api/"));
}

describe("job traces with tracing off", () => {
  let hodei: InProcessServer;

  before(async () => {
    hodei = await startInProcessServer();
  });
  after(async () => {
    await hodei.stop();
  });

  it("loads no OpenTelemetry SDK module and gives a job without a traceparent no trace", async () => {
    const { job } = await hodei.client.submitJob({ command: ["sh", "-c", 'echo "TP=[$TRACEPARENT]"'] });
    const settled = await waitUntilSettled(hodei.client, job!.id, Date.now() + 60_000, 50);
    assert.equal(settled.job.state, "succeeded");
    assert.equal(settled.job.traceId, "");
    assert.match(await logText(hodei.client, job!.id), /^TP=\[\]\n/m);
    assert.deepEqual(loadedOpenTelemetry(), []);
  });

  it("passes a caller's traceparent on to the command as given, and shows its trace id", async () => {
    const { job } = await hodei.client.submitJob({ command: ["sh", "-c", 'echo "TP=[$TRACEPARENT]"'], traceparent: CALLER });
    assert.equal(job!.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    const settled = await waitUntilSettled(hodei.client, job!.id, Date.now() + 60_000, 50);
    assert.equal(settled.job.state, "succeeded");
    assert.match(await logText(hodei.client, job!.id), new RegExp(`^TP=\\[${CALLER}\\]\\n`, "m"));
    // A TRACEPARENT the job's own env sets wins.
    const own = await hodei.client.submitJob({ command: ["sh", "-c", 'echo "TP=[$TRACEPARENT]"'], traceparent: CALLER, env: { TRACEPARENT: "mine" } });
    await waitUntilSettled(hodei.client, own.job!.id, Date.now() + 60_000, 50);
    assert.match(await logText(hodei.client, own.job!.id), /^TP=\[mine\]\n/m);
    assert.deepEqual(loadedOpenTelemetry(), []);
  });
});
