/**
 * The webhook sender against a real HTTP server on 127.0.0.1 (the only address this machine may
 * reach): the status decides, the body is never read, redirects are not followed, the time limit
 * holds; and the address rule, with a fake resolver so that no real name is ever resolved and no
 * other address is ever connected to.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { checkedLookup, LookupLimiter, MAX_LOOKUPS, type Resolve, sendWebhook, type WebhookRequest } from "./webhook-send.js";

interface Seen {
  path: string;
  host: string;
  body: string;
}

describe("sendWebhook", () => {
  let server: http.Server;
  let port: number;
  let seen: Seen[];
  let answer: (req: http.IncomingMessage, res: http.ServerResponse) => void;

  before(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        seen.push({ path: req.url ?? "", host: req.headers.host ?? "", body });
        answer(req, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen = [];
    answer = (_req, res) => res.writeHead(204).end();
  });

  const request = (overrides: Partial<WebhookRequest> = {}): WebhookRequest => ({
    url: `http://127.0.0.1:${port}/hook`,
    body: '{"type":"job.finished"}',
    headers: { "content-type": "application/json", "hodei-delivery": "d1" },
    timeoutMs: 2000,
    isPrivateAllowed: true,
    ...overrides,
  });

  it("posts the body with the headers and answers with the status", async () => {
    assert.deepEqual(await sendWebhook(request()), { status: 204, error: "", isRefused: false });
    assert.deepEqual(seen, [{ path: "/hook", host: `127.0.0.1:${port}`, body: '{"type":"job.finished"}' }]);
    answer = (_req, res) => res.writeHead(500).end("boom");
    assert.equal((await sendWebhook(request())).status, 500);
  });

  it("does not read an endless answer body", async () => {
    answer = (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 97);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    };
    assert.equal((await sendWebhook(request())).status, 200);
  });

  it("does not follow a redirect", async () => {
    answer = (req, res) => (req.url === "/hook" ? res.writeHead(302, { location: `http://127.0.0.1:${port}/elsewhere` }).end() : res.writeHead(200).end());
    assert.equal((await sendWebhook(request())).status, 302);
    assert.deepEqual(seen.map((s) => s.path), ["/hook"]);
  });

  it("gives up on a receiver that does not answer within the time limit", async () => {
    answer = () => {}; // never answers
    const started = Date.now();
    const outcome = await sendWebhook(request({ timeoutMs: 300 }));
    assert.deepEqual(outcome, { status: null, error: "no answer within 300 ms", isRefused: false });
    assert.ok(Date.now() - started < 5000);
  });

  it("says why when nothing listens", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const outcome = await sendWebhook(request({ url: `http://127.0.0.1:${freePort}/` }));
    assert.equal(outcome.status, null);
    assert.match(outcome.error, /ECONNREFUSED/);
  });

  it("refuses a loopback, private or metadata address written in the URL before connecting", async () => {
    for (const url of [`http://127.0.0.1:${port}/hook`, "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/", "http://localhost/"]) {
      const outcome = await sendWebhook(request({ url, isPrivateAllowed: false }));
      assert.equal(outcome.isRefused, true, url);
      assert.match(outcome.error, /^refused: .*HODEI_WEBHOOK_ALLOW_PRIVATE=1/, url);
    }
    assert.deepEqual(seen, [], "nothing reached the receiver");
  });

  it("connects to exactly the address its lookup checked, once per request", async () => {
    const asked: string[] = [];
    const resolve: Resolve = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, [{ address: "127.0.0.1", family: 4 }]);
    };
    assert.equal((await sendWebhook(request({ url: `http://receiver.test:${port}/hook` }), undefined, resolve)).status, 204);
    assert.deepEqual(asked, ["receiver.test"]);
    assert.equal(seen[0].host, `receiver.test:${port}`, "the Host header keeps the name");

    const refused = await sendWebhook(request({ url: `http://receiver.test:${port}/hook`, isPrivateAllowed: false }), undefined, resolve);
    assert.equal(refused.isRefused, true);
    assert.match(refused.error, /receiver\.test resolves to 127\.0\.0\.1, a loopback address/);
    assert.equal(seen.length, 1, "the refused one never connected");
  });
});

describe("checkedLookup", () => {
  const fake =
    (addresses: { address: string; family: number }[]): Resolve =>
    (_hostname, _options, callback) =>
      callback(null, addresses);
  const run = (resolve: Resolve, all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null; result: unknown }>((done) =>
      checkedLookup(resolve)("hooks.example.com", { all } as never, (err: NodeJS.ErrnoException | null, address: unknown) => done({ err, result: address })),
    );

  it("passes public addresses through, one or all as the socket asks", async () => {
    const addresses = [
      { address: "93.184.216.34", family: 4 },
      { address: "2606:2800:220:1:248:1893:25c8:1946", family: 6 },
    ];
    assert.deepEqual(await run(fake(addresses), true), { err: null, result: addresses });
    assert.deepEqual(await run(fake(addresses), false), { err: null, result: "93.184.216.34" });
  });

  it("refuses a name with any private, metadata or mapped-loopback address among its answers (DNS rebinding)", async () => {
    for (const bad of ["10.0.0.7", "169.254.169.254", "::ffff:127.0.0.1", "fd00:ec2::254", "100.64.1.1", "0.0.0.0"]) {
      const { err } = await run(fake([{ address: "93.184.216.34", family: 4 }, { address: bad, family: bad.includes(":") ? 6 : 4 }]), true);
      assert.ok(err, bad);
      assert.equal(err.code, "EHODEI_ADDRESS_REFUSED");
      assert.match(err.message, new RegExp(`resolves to ${bad.replace(/\./g, "\\.")}`));
    }
  });

  it("passes a resolver's error on", async () => {
    const failing: Resolve = (_h, _o, callback) => callback(Object.assign(new Error("getaddrinfo ENOTFOUND hooks.example.com"), { code: "ENOTFOUND" }), []);
    assert.equal((await run(failing, true)).err?.code, "ENOTFOUND");
  });
});

describe("LookupLimiter: webhook lookups never take libuv's whole threadpool", () => {
  /** A resolver that never answers until told to: a webhook host whose DNS server is down. */
  function hangingResolver() {
    const pending: { hostname: string; answer: () => void }[] = [];
    const resolve: Resolve = (hostname, _options, callback) => {
      pending.push({ hostname, answer: () => callback(null, [{ address: "127.0.0.1", family: 4 }]) });
    };
    return { resolve, pending };
  }

  it("runs at most its limit at once, starts a waiting one when one answers, and drops one whose request is gone", async () => {
    const { resolve, pending } = hangingResolver();
    const limiter = new LookupLimiter(resolve, MAX_LOOKUPS);
    const answered: string[] = [];
    const gone = new AbortController();
    for (const name of ["a.test", "b.test", "c.test", "d.test"]) {
      limiter.lookup(name, { all: true }, () => void answered.push(name), name === "c.test" ? gone.signal : undefined);
    }
    assert.equal(MAX_LOOKUPS, 2);
    assert.deepEqual(pending.map((p) => p.hostname), ["a.test", "b.test"], "two of the four asked the resolver");
    assert.equal(limiter.queued, 2);
    gone.abort(); // c.test's request timed out while it waited
    pending.shift()!.answer();
    assert.deepEqual(answered, ["a.test"]);
    assert.deepEqual(pending.map((p) => p.hostname), ["b.test", "d.test"], "c.test was dropped unasked, d.test took the turn");
    for (const p of pending.splice(0)) p.answer();
    assert.deepEqual(answered, ["a.test", "b.test", "d.test"]);
    assert.equal(limiter.active, 0);
    assert.equal(limiter.queued, 0);
  });

  it("sendWebhook: requests to a name whose resolver hangs end at their time limit, and only the limit's lookups were started", async () => {
    const { resolve, pending } = hangingResolver();
    const limiter = new LookupLimiter(resolve, MAX_LOOKUPS);
    const outcomes = await Promise.all(
      [1, 2, 3, 4, 5].map((i) =>
        sendWebhook({ url: `http://hooks-${i}.test/`, body: "{}", headers: {}, timeoutMs: 300, isPrivateAllowed: true }, undefined, limiter.lookup),
      ),
    );
    for (const outcome of outcomes) assert.match(outcome.error, /no answer within 300 ms/);
    assert.equal(pending.length, 2, "two lookups held a thread; the three that waited were dropped with their requests");
    for (const p of pending.splice(0)) p.answer(); // late answers, to sockets already destroyed: nothing connects or throws
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(limiter.active, 0);
    assert.equal(limiter.queued, 0);
  });
});
