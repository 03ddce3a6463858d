/**
 * OTLP export end to end: a real `hodei server` process with OTEL_EXPORTER_OTLP_ENDPOINT pointing at
 * a small OTLP/HTTP receiver in this test (127.0.0.1). A job run with the CLI's --traceparent
 * arrives there as OTLP JSON: its spans under the caller's, as service OTEL_SERVICE_NAME. An export
 * the receiver refuses is logged by the server, and so is its recovery.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { eventually, type JobJson, jsonCli, leftoverProcesses, runCli, type ServerProcess, startServerProcess, stopLeavingNothing, waitDestroyed } from "./harness.js";

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN = "b7ad6b7169203331";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

/** An OTLP/HTTP receiver: records the spans of every POST /v1/traces; refuses them (400) while `isRefusing`. */
class Receiver {
  readonly spans: OtlpSpan[] = [];
  readonly requests: { path: string; contentType: string; serviceName: string }[] = [];
  isRefusing = false;
  private waiters: (() => void)[] = [];
  private readonly server = http.createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (d: Buffer) => body.push(d));
    req.on("end", () => {
      const path = req.url ?? "";
      if (this.isRefusing) {
        res.writeHead(400, { "content-type": "application/json" }).end('{"message":"refused by the test"}');
        this.requests.push({ path, contentType: req.headers["content-type"] ?? "", serviceName: "(refused)" });
        return this.wake();
      }
      const payload = JSON.parse(Buffer.concat(body).toString("utf8")) as {
        resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of payload.resourceSpans) {
        const serviceName = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "";
        this.requests.push({ path, contentType: req.headers["content-type"] ?? "", serviceName });
        for (const ss of rs.scopeSpans) this.spans.push(...ss.spans);
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
      this.wake();
    });
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Waits until `isDone()` holds, checked at every request, within timeoutMs. */
  async until(isDone: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!isDone()) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`${what} did not happen within ${timeoutMs} ms; spans: ${this.spans.map((s) => s.name).join(", ")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}

describe("OTLP export to a collector", () => {
  const receiver = new Receiver();
  let server: ServerProcess;

  before(async () => {
    const url = await receiver.listen();
    server = await startServerProcess({ OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_SERVICE_NAME: "hodei-e2e" });
  });
  after(async () => {
    // The receiver outlives the server: it may still send its last spans while it stops.
    try {
      await stopLeavingNothing(server, "no process of the cluster is left");
    } finally {
      await receiver.close();
    }
  });

  it("sends a job's spans as OTLP JSON to <endpoint>/v1/traces, under the caller's span", async () => {
    const traceparent = `00-${TRACE}-${CALLER_SPAN}-01`;
    const result = await runCli(server, ["run", "--traceparent", traceparent, "--", "sh", "-c", 'echo "TP=$TRACEPARENT"']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^TP=00-${TRACE}-[0-9a-f]{16}-01\\n$`), "the command got a TRACEPARENT in the caller's trace");
    const [job] = await jsonCli<(JobJson & { traceId?: string })[]>(server, ["jobs", "ls", "--limit", "1"]);
    assert.equal(job.traceId, TRACE);
    await waitDestroyed(server, job.id);
    const ofJob = () => receiver.spans.filter((s) => s.traceId === TRACE);
    await receiver.until(() => ["job", "queued", "provision", "register", "run", "destroy", "provider stop"].every((n) => ofJob().some((s) => s.name === n)), "the job's spans arriving");

    const root = ofJob().find((s) => s.name === "job")!;
    assert.equal(root.parentSpanId, CALLER_SPAN);
    for (const phase of ["queued", "provision", "register", "run", "destroy"]) {
      assert.equal(ofJob().find((s) => s.name === phase)!.parentSpanId, root.spanId, `${phase} under the job's span`);
    }
    const runSpan = ofJob().find((s) => s.name === "run")!;
    assert.equal(result.stdout.trim(), `TP=00-${TRACE}-${runSpan.spanId}-01`, "TRACEPARENT points at the run span");
    assert.ok(receiver.requests.every((r) => r.path === "/v1/traces" && r.contentType.startsWith("application/json")));
    assert.ok(receiver.requests.every((r) => r.serviceName === "hodei-e2e"));

    // hodei jobs get shows where to find it.
    const details = await runCli(server, ["jobs", "get", job.id]);
    assert.match(details.stdout, new RegExp(`trace id\\s+${TRACE}`));
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("logs an export the collector refuses, and when export works again", async () => {
    // The server's output is read line by line as it prints it (harness.ts).
    const logged = (message: string) => server.output.some((line) => line.includes(`"msg":"${message}"`));
    receiver.isRefusing = true;
    const refused = receiver.requests.length;
    const first = await runCli(server, ["run", "--", "true"]);
    assert.equal(first.code, 0, first.stderr);
    await receiver.until(() => receiver.requests.length > refused, "a refused export");
    assert.ok(await eventually(() => logged("trace export failed; spans are dropped until it works again"), 30_000), "the failure is logged");
    receiver.isRefusing = false;
    const second = await runCli(server, ["run", "--", "true"]);
    assert.equal(second.code, 0, second.stderr);
    const [job] = await jsonCli<(JobJson & { traceId?: string })[]>(server, ["jobs", "ls", "--limit", "1"]);
    await receiver.until(() => receiver.spans.some((s) => s.traceId === job.traceId && s.name === "job"), "the next job's spans");
    assert.ok(await eventually(() => logged("trace export works again"), 30_000), "the recovery is logged");
    assert.deepEqual(await leftoverProcesses(server), []);
  });
});
