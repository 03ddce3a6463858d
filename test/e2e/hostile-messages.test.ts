/**
 * Hostile messages against a real server process with its default limits: each test performs the
 * attack on the wire (Connect JSON and binary over HTTP/1.1, gRPC over HTTP/2, gRPC-Web) and shows
 * it is refused with a client error that says what is wrong, and that the server is unharmed.
 */
import assert from "node:assert/strict";
import net from "node:net";
import zlib from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { after, before, describe, it } from "node:test";
import { GetJobRequestSchema, JobService, ListJobsRequestSchema, SubmitJobRequestSchema } from "../../src/gen/hodei/v1/api_pb.js";
import { bearer, leftoverProcesses, runCli, type ServerProcess, sendKey, startServerProcess, stopLeavingNothing } from "./harness.js";
import { brotliBomb, envelope, gzipBomb, http1Request as http1Raw, http2Request as http2Raw, procCpuSeconds, procMemoryBytes, type RawResponse, resetPeakMemory, sendChunked } from "./raw-wire.js";

const SUBMIT = "/hodei.v1.JobService/SubmitJob";
const LIST = "/hodei.v1.JobService/ListJobs";
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
const MB = 1024 * 1024;

/** The { code, message } of a Connect unary error body. */
function connectError(res: RawResponse): { code?: string; message?: string } {
  return JSON.parse(res.body.toString()) as { code?: string; message?: string };
}

/** grpc-status and decoded grpc-message of an HTTP/2 gRPC answer. */
function grpcStatus(res: RawResponse): { code: number; message: string } {
  const code = res.trailers["grpc-status"] ?? res.headers["grpc-status"];
  const message = res.trailers["grpc-message"] ?? res.headers["grpc-message"] ?? "";
  return { code: Number(code), message: decodeURIComponent(String(message)) };
}

/** grpc-status and grpc-message from a gRPC-Web body's trailer frame. */
function grpcWebStatus(res: RawResponse): { code: number; message: string } {
  let offset = 0;
  while (offset + 5 <= res.body.length) {
    const flags = res.body[offset];
    const length = res.body.readUInt32BE(offset + 1);
    const data = res.body.subarray(offset + 5, offset + 5 + length);
    offset += 5 + length;
    if (flags & 0x80) {
      const fields = Object.fromEntries(
        data
          .toString()
          .split("\r\n")
          .filter(Boolean)
          .map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
      );
      return { code: Number(fields["grpc-status"]), message: decodeURIComponent(fields["grpc-message"] ?? "") };
    }
  }
  throw new Error(`no trailer frame in ${res.body.toString("hex")}`);
}

const grpcHeaders = { "content-type": "application/grpc+proto" };
const submitBinary = (init: Parameters<typeof create<typeof SubmitJobRequestSchema>>[1]) => Buffer.from(toBinary(SubmitJobRequestSchema, create(SubmitJobRequestSchema, init)));

/** SubmitJobRequest{command: [bytes]} written by hand: field 1, length-delimited, any bytes. */
function submitWithRawCommand(bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes]);
}

describe("hostile messages", () => {
  let server: ServerProcess;
  // Each attack carries the admin key, so that it reaches the check it is about: a streaming call
  // without a key is refused before its message is read (auth.test.ts covers calls without one).
  const http1Request: typeof http1Raw = (url, options) => http1Raw(url, { ...options, headers: { ...bearer(server), ...options.headers } });
  const http2Request: typeof http2Raw = (url, options) => http2Raw(url, { ...options, headers: { ...bearer(server), ...options.headers } });

  before(async () => {
    server = await startServerProcess();
  });
  after(async () => {
    await stopLeavingNothing(server);
  });

  describe("the Host header", () => {
    /** One raw HTTP/1.x request on its own connection; the status line of the answer. */
    const rawStatusLine = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(server.port, "127.0.0.1", () => socket.write(request));
        let answer = "";
        socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
        socket.on("close", () => resolve(answer));
        socket.on("error", reject);
        setTimeout(() => socket.end(), 2000).unref();
      });

    it("refuses an API call without a usable Host (HTTP/1.0 without one, empty, not a host) with 400, and serves on", async () => {
      const body = "{}";
      const head = (version: string, host: string | null) =>
        `POST ${LIST} HTTP/${version}\r\n${host === null ? "" : `Host: ${host}\r\n`}authorization: Bearer ${server.adminKey}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
      for (const [version, host] of [["1.0", null], ["1.1", ""], ["1.1", "a b"], ["1.0", "[::1"]] as const) {
        const answer = await rawStatusLine(head(version, host));
        assert.match(answer, /^HTTP\/1\.1 400 /, `HTTP/${version} with Host ${JSON.stringify(host)}: ${answer.slice(0, 200)}`);
        if (host !== "") assert.match(answer, /Host header is missing or not a host/);
        assert.equal(server.process.exitCode, null, "the server still runs");
      }
      // And a well-formed call still works.
      const ok = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: "{}" });
      assert.equal(ok.status, 200);
    });
  });

  describe("message size", () => {
    /** Sends `attack` and returns the server's growth of resident and peak resident memory, bytes. */
    async function memoryGrowth(attack: () => Promise<void>): Promise<{ rss: number; peak: number }> {
      const pid = server.process.pid!;
      // Warm the call path first, so that what is measured is the attack, not first-use allocations.
      await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: "{}" });
      const rssBefore = procMemoryBytes(pid, "VmRSS");
      resetPeakMemory(pid);
      await attack();
      return { rss: procMemoryBytes(pid, "VmRSS") - rssBefore, peak: procMemoryBytes(pid, "VmHWM") - rssBefore };
    }

    for (const { name, encoding, make } of [
      { name: "gzip", encoding: "gzip", make: gzipBomb },
      { name: "brotli", encoding: "br", make: brotliBomb },
    ]) {
      it(`refuses a ${name} Connect body that inflates past the limit with a 4xx, without the server's memory growing 100 MB`, async () => {
        const bomb = await make(300 * MB);
        assert.ok(bomb.length < 400 * 1024, `the bomb is small on the wire (${bomb.length} bytes)`);
        let res: RawResponse | undefined;
        const growth = await memoryGrowth(async () => {
          res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json", "content-encoding": encoding }, body: bomb });
        });
        console.log(`${name} bomb (Connect, ${bomb.length} bytes -> 300 MiB): status ${res!.status}, RSS growth ${(growth.rss / MB).toFixed(1)} MiB, peak growth ${(growth.peak / MB).toFixed(1)} MiB`);
        assert.ok(res!.status >= 400 && res!.status < 500, `status ${res!.status}`);
        assert.equal(connectError(res!).code, "resource_exhausted");
        assert.match(connectError(res!).message ?? "", new RegExp(`${DEFAULT_MAX_MESSAGE_BYTES} after decompression`));
        assert.ok(growth.rss < 100 * MB, `RSS grew ${growth.rss} bytes`);
        assert.ok(growth.peak < 100 * MB, `peak RSS grew ${growth.peak} bytes`);
      });
    }

    it("refuses a gRPC envelope with the compressed flag that inflates past the limit, without the server's memory growing 100 MB", async () => {
      const bomb = await gzipBomb(300 * MB);
      let res: RawResponse | undefined;
      const growth = await memoryGrowth(async () => {
        res = await http2Request(server.url, { path: SUBMIT, headers: { ...grpcHeaders, "grpc-encoding": "gzip" }, body: envelope(1, bomb) });
      });
      const status = grpcStatus(res!);
      console.log(`gzip bomb (gRPC envelope, ${bomb.length} bytes -> 300 MiB): grpc-status ${status.code}, RSS growth ${(growth.rss / MB).toFixed(1)} MiB, peak growth ${(growth.peak / MB).toFixed(1)} MiB`);
      assert.equal(status.code, 8, `resource_exhausted, got ${JSON.stringify(status)}`);
      assert.match(status.message, /after decompression/);
      assert.ok(growth.rss < 100 * MB, `RSS grew ${growth.rss} bytes`);
      assert.ok(growth.peak < 100 * MB, `peak RSS grew ${growth.peak} bytes`);
    });

    it("refuses an uncompressed body over the limit", async () => {
      const body = Buffer.from(JSON.stringify({ command: ["echo", "x".repeat(DEFAULT_MAX_MESSAGE_BYTES)] }));
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json" }, body });
      assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
      assert.equal(connectError(res).code, "resource_exhausted");
    });

    it("refuses a gRPC envelope that announces more than the limit at its header, before any body", async () => {
      const head = Buffer.from([0, 0xff, 0xff, 0xff, 0xf0]);
      const res = await http2Request(server.url, { path: SUBMIT, headers: grpcHeaders, body: head });
      const status = grpcStatus(res);
      assert.equal(status.code, 8, JSON.stringify(status));
      assert.match(status.message, /readMaxBytes/);
    });

    it("still accepts a SubmitJob at its largest spec (a 1 MiB script)", async () => {
      const body = JSON.stringify({ script: `: ${"x".repeat(1024 * 1024 - 3)}`, labels: { big: "y".repeat(256) } });
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json" }, body });
      assert.equal(res.status, 200, res.body.toString().slice(0, 300));
      const id = (JSON.parse(res.body.toString()) as { job: { id: string } }).job.id;
      const logs = await runCli(server, ["logs", "-f", id]);
      assert.equal(logs.code, 0, logs.stderr);
    });
  });

  describe("chunking", () => {
    it("reassembles a message sent as 50,000 one-byte chunks without spending seconds of CPU on it", async () => {
      // Before envelope-chunks.ts (then whole-envelopes.ts), connect-es's envelope decoder took 31 s of CPU on this.
      const message = Buffer.from(toBinary(ListJobsRequestSchema, create(ListJobsRequestSchema, { provider: "p".repeat(49_990), limit: 1 })));
      const pid = server.process.pid!;
      const cpuBefore = procCpuSeconds(pid);
      const head = `POST ${LIST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nAuthorization: ${bearer(server).authorization}\r\n`;
      const answer = await sendChunked(server.port, head, envelope(0, message), 1);
      const cpu = procCpuSeconds(pid) - cpuBefore;
      console.log(`50,000 one-byte chunks: server CPU ${cpu.toFixed(2)} s`);
      assert.match(answer.toString("latin1"), /^HTTP\/1\.1 200/);
      assert.match(answer.toString("latin1"), /grpc-status: ?0\r\n/, "the reassembled message was read and answered");
      assert.ok(cpu < 5, `server CPU ${cpu} s`);
    });
  });

  describe("response compression", () => {
    // connect-node compresses with zlib's defaults: brotli at quality 11 took about 1.3 s of CPU
    // per MB, so a client that asked for brotli made every large GetLogs cost the server seconds.
    for (const compression of [compressionBrotli, compressionGzip]) {
      it(`a client asking for ${compression.name} responses gets them without costing the server a second of CPU per 2 MB read`, async () => {
        const run = await runCli(server, ["run", "--", "seq 1 300000"]);
        assert.equal(run.code, 0, run.stderr);
        const jobs = JSON.parse((await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: '{"limit":1}' })).body.toString()) as { jobs: { id: string }[] };
        const client = createClient(JobService, createGrpcTransport({ baseUrl: server.url, acceptCompression: [compression], interceptors: [sendKey(server)] }));
        const pid = server.process.pid!;
        const cpuBefore = procCpuSeconds(pid);
        let encoding: string | null = null;
        const data: Uint8Array[] = [];
        for await (const entry of client.getLogs({ jobId: jobs.jobs[0].id }, { onHeader: (h) => (encoding = h.get("grpc-encoding")) })) data.push(entry.data);
        const cpu = procCpuSeconds(pid) - cpuBefore;
        const output = Buffer.concat(data);
        console.log(`GetLogs of ${output.length} bytes as ${encoding}: server CPU ${cpu.toFixed(2)} s`);
        assert.equal(encoding, compression.name, "the server answered in the compression asked for");
        assert.equal(output.toString(), `${Array.from({ length: 300_000 }, (_, i) => i + 1).join("\n")}\n`);
        assert.ok(cpu < 1, `server CPU ${cpu} s for ${output.length} bytes`);
      });
    }
  });

  describe("decode errors answer invalid_argument, naming the problem", () => {
    const garbage = Buffer.from("ffffffffffffffffffff", "hex");

    it("a Connect binary body that is not protobuf: 400", async () => {
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/proto" }, body: garbage });
      assert.equal(res.status, 400);
      assert.equal(connectError(res).code, "invalid_argument");
      assert.match(connectError(res).message ?? "", /cannot decode message hodei\.v1\.SubmitJobRequest from binary: invalid varint/);
    });

    it("a gRPC message that is not protobuf: invalid_argument", async () => {
      const status = grpcStatus(await http2Request(server.url, { path: SUBMIT, headers: grpcHeaders, body: envelope(0, garbage) }));
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /cannot decode message hodei\.v1\.SubmitJobRequest from binary/);
    });

    it("a gRPC-Web message that is not protobuf: invalid_argument", async () => {
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/grpc-web+proto" }, body: envelope(0, garbage) });
      const status = grpcWebStatus(res);
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /from binary/);
    });

    it("a server-streaming request (GetLogs) that is not protobuf: invalid_argument", async () => {
      const status = grpcStatus(await http2Request(server.url, { path: "/hodei.v1.JobService/GetLogs", headers: grpcHeaders, body: envelope(0, garbage) }));
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /cannot decode message hodei\.v1\.GetLogsRequest from binary/);
    });

    it("a truncated gRPC envelope: invalid_argument", async () => {
      const whole = envelope(0, submitBinary({ command: ["echo", "hi"] }));
      const status = grpcStatus(await http2Request(server.url, { path: SUBMIT, headers: grpcHeaders, body: whole.subarray(0, whole.length - 3) }));
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /incomplete envelope/);
    });

    it("a compressed gRPC envelope without grpc-encoding: invalid_argument naming the header", async () => {
      const body = envelope(1, zlib.gzipSync(submitBinary({ command: ["echo", "hi"] })));
      const status = grpcStatus(await http2Request(server.url, { path: SUBMIT, headers: grpcHeaders, body }));
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /grpc-encoding/);
    });

    it("an unknown grpc-encoding: unimplemented (as the gRPC compression spec requires), listing the supported ones", async () => {
      const body = envelope(1, Buffer.from("whatever"));
      const res = await http2Request(server.url, { path: SUBMIT, headers: { ...grpcHeaders, "grpc-encoding": "snappy" }, body });
      const status = grpcStatus(res);
      assert.equal(status.code, 12, JSON.stringify(status));
      assert.match(status.message, /snappy.*gzip,br/);
    });

    it("a gzip Connect body that is cut short: 400", async () => {
      const gz = zlib.gzipSync(JSON.stringify({ command: ["echo", "x".repeat(5000)] }));
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gz.subarray(0, Math.floor(gz.length / 2)) });
      assert.equal(res.status, 400, res.body.toString());
      assert.match(connectError(res).message ?? "", /cannot decompress the request: not valid for its content encoding/);
    });

    it("a gzip Connect body that is not gzip: 400", async () => {
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: "not gzip at all" });
      assert.equal(res.status, 400, res.body.toString());
      assert.equal(connectError(res).code, "invalid_argument");
    });

    it("invalid JSON: 400", async () => {
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json" }, body: '{"command":["echo",' });
      assert.equal(res.status, 400);
      assert.equal(connectError(res).code, "invalid_argument");
      assert.match(connectError(res).message ?? "", /cannot decode message hodei\.v1\.SubmitJobRequest from JSON/);
    });

    it("a JSON field of the wrong type: 400 naming the field", async () => {
      const res = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: '{"limit":"many"}' });
      assert.equal(res.status, 400);
      assert.match(connectError(res).message ?? "", /ListJobsRequest\.limit/);
    });
  });

  describe("unknown JSON fields", () => {
    it("refuses {command, urgency} with 400 naming urgency, and stores nothing", async () => {
      const before = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: '{"limit":500}' });
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json" }, body: '{"command":["echo"],"urgency":5}' });
      assert.equal(res.status, 400);
      assert.equal(connectError(res).code, "invalid_argument");
      assert.match(connectError(res).message ?? "", /"urgency" is unknown/);
      const afterwards = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: '{"limit":500}' });
      assert.equal(afterwards.body.toString(), before.body.toString(), "no job was stored");
    });
  });

  describe("invalid UTF-8 in string fields", () => {
    const invalid = Buffer.from([0x61, 0xff, 0x62]);

    it("is refused in a JSON body with 400, not replaced by U+FFFD", async () => {
      const body = Buffer.concat([Buffer.from('{"command":["echo","'), invalid, Buffer.from('"]}')]);
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/json" }, body });
      assert.equal(res.status, 400, res.body.toString());
      assert.match(connectError(res).message ?? "", /not valid for encoding utf-8/i);
    });

    it("is refused in a Connect binary body with 400", async () => {
      const res = await http1Request(server.url, { path: SUBMIT, headers: { "content-type": "application/proto" }, body: submitWithRawCommand(invalid) });
      assert.equal(res.status, 400, res.body.toString());
      assert.match(connectError(res).message ?? "", /invalid UTF-8/);
    });

    it("is refused in a gRPC map value (env) with invalid_argument", async () => {
      // SubmitJobRequest.env (field 4) entry {key "A" (1), value <invalid> (2)}, command ["true"].
      const entry = Buffer.concat([Buffer.from([0x0a, 1, 0x41, 0x12, invalid.length]), invalid]);
      const body = Buffer.concat([submitWithRawCommand(Buffer.from("true")), Buffer.from([0x22, entry.length]), entry]);
      const status = grpcStatus(await http2Request(server.url, { path: SUBMIT, headers: grpcHeaders, body: envelope(0, body) }));
      assert.equal(status.code, 3, JSON.stringify(status));
      assert.match(status.message, /invalid UTF-8/);
    });

    it("is refused in a Connect GET query with 400", async () => {
      const res = await http1Request(server.url, {
        method: "GET",
        path: `/hodei.v1.JobService/GetJob?connect=v1&encoding=json&message=${encodeURIComponent('{"id":"a')}%FF${encodeURIComponent('"}')}`,
      });
      assert.equal(res.status, 400, res.body.toString());
      assert.match(connectError(res).message ?? "", /UTF-8/);
    });

    it("still answers well-formed GET, binary and JSON requests", async () => {
      const message = Buffer.from(toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { id: "nope-é" }))).toString("base64url");
      const get = await http1Request(server.url, { method: "GET", path: `/hodei.v1.JobService/GetJob?connect=v1&encoding=proto&base64=1&message=${message}` });
      assert.equal(get.status, 404, get.body.toString());
      assert.match(connectError(get).message ?? "", /nope-é/);
      const list = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/proto" }, body: Buffer.from(toBinary(ListJobsRequestSchema, create(ListJobsRequestSchema, { limit: 1 }))) });
      assert.equal(list.status, 200, list.body.toString());
    });

    it("job output that is not UTF-8 reaches gRPC readers byte for byte (log data is bytes)", async () => {
      const run = await runCli(server, ["run", "--", "printf 'a\\377b\\n'"]);
      assert.equal(run.code, 0, run.stderr);
      const jobs = JSON.parse((await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: '{"limit":1}' })).body.toString()) as { jobs: { id: string }[] };
      const client = createClient(JobService, createGrpcTransport({ baseUrl: server.url, interceptors: [sendKey(server)] }));
      const data: Uint8Array[] = [];
      for await (const entry of client.getLogs({ jobId: jobs.jobs[0].id })) data.push(entry.data);
      assert.deepEqual(Buffer.concat(data), Buffer.from([0x61, 0xff, 0x62, 0x0a]));
      assert.deepEqual(await leftoverProcesses(server), []);
    });
  });

  describe("list fields are bounded", () => {
    it("refuses a million ListJobs states with 400 naming the field (not a SQL error)", async () => {
      const body = JSON.stringify({ states: Array.from({ length: 1_000_000 }, () => "q") });
      assert.ok(body.length < DEFAULT_MAX_MESSAGE_BYTES, "under the message limit, so the bound is what refuses it");
      const res = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body });
      assert.equal(res.status, 400, res.body.toString().slice(0, 300));
      assert.match(connectError(res).message ?? "", /^states: at most 32 entries/);
    });

    it("counts comma-separated states as entries", async () => {
      const res = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: JSON.stringify({ states: [Array(100_000).fill("queued").join(",")] }) });
      assert.equal(res.status, 400, res.body.toString().slice(0, 300));
      assert.match(connectError(res).message ?? "", /^states: at most 32 entries/);
    });

    it("accepts 32 entries, duplicates included", async () => {
      const res = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: JSON.stringify({ states: [...Array(30).fill("queued"), "running,queued"] }) });
      assert.equal(res.status, 200, res.body.toString());
    });

    it("does not echo a huge unknown state back", async () => {
      const res = await http1Request(server.url, { path: LIST, headers: { "content-type": "application/json" }, body: JSON.stringify({ states: ["z".repeat(1_000_000)] }) });
      assert.equal(res.status, 400);
      assert.ok(res.body.length < 1000, `answer of ${res.body.length} bytes`);
    });
  });
});
