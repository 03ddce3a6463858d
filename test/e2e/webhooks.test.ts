/**
 * Webhooks end to end on the local provider: a real server, real agents, the real CLI, and a
 * receiver on 127.0.0.1 (the only address this machine may send to, hence
 * HODEI_WEBHOOK_ALLOW_PRIVATE=1 on the server that delivers). A job's end is received, signed so
 * that the check the README documents (copied here as it is written there) accepts it and refuses
 * a tampered body; a receiver that fails is retried until it answers 2xx and `jobs get --json`
 * shows the delivery delivered; the server-wide URL gets every job; a receiver that hangs delays
 * no job; without HODEI_WEBHOOK_ALLOW_PRIVATE a private URL is refused at submit, before any
 * connection. Every test proves no worker process is left.
 */
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { eventually, type JobJson, jsonCli, leftoverProcesses, runCli, type ServerProcess, startServerProcess, stopLeavingNothing } from "./harness.js";

const SECRET = "whsec-e2e-0123456789abcdef";

// ---- The README's check, as written there ------------------------------------------------------
function verifyHodeiSignature(header: string, rawBody: string, secret: string, toleranceSeconds = 300): boolean {
  const fields = Object.fromEntries(header.split(",").map((part) => part.split("=", 2)));
  const t = Number(fields.t);
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${rawBody}`).digest();
  const given = Buffer.from(fields.v1 ?? "", "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}
// -------------------------------------------------------------------------------------------------

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface DeliveryJson {
  id: string;
  url: string;
  state: string;
  attempts: number;
  lastStatus?: number;
  lastError?: string;
  deliveredAt?: string;
}

interface WebhookJobJson extends JobJson {
  deliveries?: DeliveryJson[];
}

/** A receiver on 127.0.0.1: /ok answers 204, /flaky 500 twice then 200, /hang never answers. */
class Receiver {
  readonly received: Received[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly hanging = new Set<http.ServerResponse>();
  private flakyFailures = 0;
  private server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      this.received.push({ path: req.url ?? "", headers: req.headers, body });
      for (const wake of this.waiters.splice(0)) wake();
      if (req.url?.startsWith("/hang")) {
        this.hanging.add(res);
        res.on("close", () => this.hanging.delete(res));
        return;
      }
      if (req.url?.startsWith("/flaky") && this.flakyFailures < 2) {
        this.flakyFailures++;
        return res.writeHead(500).end("not yet");
      }
      res.writeHead(req.url?.startsWith("/flaky") ? 200 : 204).end();
    });
  });
  port = 0;

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Requests open on /hang right now. */
  get openHanging(): number {
    return this.hanging.size;
  }

  /** Resolves with the requests matching `predicate` once there are `count` of them (no polling: each request wakes it). */
  async waitFor(predicate: (r: Received) => boolean, count = 1, timeoutMs = 30_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const matching = this.received.filter(predicate);
      if (matching.length >= count) return matching;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`received ${matching.length} of ${count} requests; all: ${JSON.stringify(this.received.map((r) => r.path))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const jobOf = (r: Received) => (JSON.parse(r.body) as { job: { id: string } }).job.id;

describe("webhooks on the local provider", () => {
  const receiver = new Receiver();
  let server: ServerProcess;

  before(async () => {
    await receiver.start();
    server = await startServerProcess({
      HODEI_WEBHOOK_SECRET: SECRET,
      HODEI_WEBHOOK_ALLOW_PRIVATE: "1",
      HODEI_WEBHOOK_URL: receiver.url("/server-wide"),
      // A short backoff, so that the retries of a flaky receiver take a second or two.
      HODEI_WEBHOOK_RETRY_BASE_MS: "200",
      HODEI_WEBHOOK_RETRY_MAX_MS: "400",
    });
  });
  afterEach(async () => {
    assert.deepEqual(await leftoverProcesses(server), [], "no worker process is left");
  });
  after(async () => {
    // The receiver outlives the server: it may still send while it stops.
    try {
      await stopLeavingNothing(server);
    } finally {
      await receiver.stop();
    }
  });

  async function runJob(args: string[]): Promise<WebhookJobJson> {
    const run = await runCli(server, ["run", "--json", ...args]);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as WebhookJobJson;
  }

  const getJob = (id: string) => jsonCli<WebhookJobJson>(server, ["jobs", "get", id, "--json"]);

  it("posts a job's end, signed so that the documented check accepts it and refuses a tampered body", async () => {
    const run = await runCli(server, ["run", "--json", "--notify", receiver.url("/ok?token=receiver-secret"), "-e", "GREETING=env-value", "--", "exit 3"]);
    assert.equal(run.code, 3, run.stderr);
    const job = JSON.parse(run.stdout) as WebhookJobJson;
    const [request] = await receiver.waitFor((r) => r.path.startsWith("/ok"));
    assert.equal(request.path, "/ok?token=receiver-secret", "sent to the URL as given");
    const body = JSON.parse(request.body) as { type: string; id: string; job: { id: string; state: string; exitCode: number; provider: string; labels: Record<string, string> } };
    assert.equal(request.headers["content-type"], "application/json");
    assert.equal(request.headers["hodei-delivery"], body.id);
    assert.equal(verifyHodeiSignature(String(request.headers["hodei-signature"]), request.body, SECRET), true, "the documented check accepts it");
    assert.equal(verifyHodeiSignature(String(request.headers["hodei-signature"]), request.body.replace('"failed"', '"succeeded"'), SECRET), false, "a tampered body fails it");
    assert.equal(verifyHodeiSignature(String(request.headers["hodei-signature"]), request.body, "another-secret-0123"), false);
    assert.equal(body.type, "job.finished");
    assert.equal(body.job.id, job.id);
    assert.deepEqual([body.job.state, body.job.exitCode, body.job.provider, body.job.labels], ["failed", 3, "local", {}]);
    assert.ok(!request.body.includes("env-value") && !request.body.includes("exit 3"), "neither env values nor the command are sent");

    // The server-wide URL got the same job's end, as a delivery of its own.
    const [serverWide] = await receiver.waitFor((r) => r.path === "/server-wide" && jobOf(r) === body.job.id);
    assert.notEqual(serverWide.headers["hodei-delivery"], body.id);
    assert.equal(verifyHodeiSignature(String(serverWide.headers["hodei-signature"]), serverWide.body, SECRET), true);

    const shown = await eventually(async () => {
      const got = await getJob(body.job.id);
      assert.equal(got.deliveries?.filter((d) => d.state === "delivered").length, 2, JSON.stringify(got.deliveries));
      return got;
    });
    const own = shown.deliveries!.find((d) => d.id === body.id)!;
    assert.equal(own.url, receiver.url("/ok"), "shown without its query (it may hold the receiver's secret)");
    assert.deepEqual([own.attempts, own.lastStatus], [1, 204]);
    assert.ok(own.deliveredAt);
    const details = await runCli(server, ["jobs", "get", body.job.id]);
    assert.match(details.stdout, /\nwebhooks\n(.*\n)*? {2}http:\/\/127\.0\.0\.1:\d+\/ok delivered\n {4}delivery +\S+\n {4}requests +1\n {4}last answer +HTTP 204\n/);
  });

  it("retries a receiver that fails twice, and shows the delivery delivered in jobs get --json", async () => {
    const job = await runJob(["--notify", receiver.url("/flaky"), "--", "true"]);
    assert.equal(job.state, "succeeded");
    const requests = await receiver.waitFor((r) => r.path === "/flaky", 3);
    assert.equal(new Set(requests.map((r) => r.headers["hodei-delivery"])).size, 1, "one delivery, three requests");
    assert.equal(new Set(requests.map((r) => r.body)).size, 1, "the same body each time");
    const delivered = await eventually(async () => {
      const got = await getJob(job.id);
      const delivery = got.deliveries?.find((d) => d.url === receiver.url("/flaky"));
      assert.equal(delivery?.state, "delivered", JSON.stringify(got.deliveries));
      return delivery!;
    });
    assert.deepEqual([delivered.attempts, delivered.lastStatus, delivered.lastError ?? ""], [3, 200, ""]);
  });

  it("a receiver that hangs delays neither its job's end nor the next job", async () => {
    const started = Date.now();
    const job = await runJob(["--notify", receiver.url("/hang"), "--", "true"]);
    assert.equal(job.state, "succeeded");
    await receiver.waitFor((r) => r.path === "/hang");
    assert.equal(receiver.openHanging, 1, "its request is still open");
    const next = await runJob(["--", "true"]);
    assert.equal(next.state, "succeeded");
    assert.equal(receiver.openHanging, 1, "the next job ended while the hanging request was still open");
    assert.ok(Date.now() - started < 10_000, "both jobs ended before the hanging request's 10 s time limit");
    const shown = await getJob(job.id);
    const hanging = shown.deliveries?.find((d) => d.url === receiver.url("/hang"));
    assert.deepEqual([hanging?.state, hanging?.attempts], ["pending", 1]);
  });
});

describe("webhooks without HODEI_WEBHOOK_ALLOW_PRIVATE", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess({ HODEI_WEBHOOK_SECRET: SECRET });
  });
  after(async () => {
    await stopLeavingNothing(server);
  });

  it("refuses a private, loopback or metadata URL at submit, naming the field, and runs nothing", async () => {
    for (const url of ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/", "http://localhost:9/"]) {
      const run = await runCli(server, ["run", "--notify", url, "--", "true"]);
      assert.notEqual(run.code, 0, url);
      assert.match(run.stderr, /notify: URL 1: .*HODEI_WEBHOOK_ALLOW_PRIVATE=1/, url);
    }
    const bad = await runCli(server, ["run", "--notify", "file:///etc/passwd", "--", "true"]);
    assert.match(bad.stderr, /notify: URL 1: "file:" URLs are not sent to: use http or https/);
    const five = ["a", "b", "c", "d", "e"].flatMap((h) => ["--notify", `https://${h}.example.com/`]);
    assert.match((await runCli(server, ["run", ...five, "--", "true"])).stderr, /notify: at most 4 URLs/);
    assert.deepEqual(await jsonCli<JobJson[]>(server, ["jobs", "ls"]), [], "no job was stored");
  });

  it("refuses to start with a private HODEI_WEBHOOK_URL, naming the variable", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    try {
      await assert.rejects(startServerProcess({ HODEI_WEBHOOK_URL: "http://127.0.0.1:9/hook" }, { dataDir }), /HODEI_WEBHOOK_URL: 127\.0\.0\.1:9 is a loopback address/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
