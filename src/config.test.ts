/**
 * Settings with rules of their own: the network edge (defaults keep the 30 s contract; inconsistent
 * values are refused), retention (HODEI_RETENTION), the cluster id override, auth (HODEI_AUTH, and
 * where the admin key may not go) and the CLI's API key.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolve } from "node:path";
import { clientAdminKeyPath, clientToken, isLoopbackHost, parseServerConfig } from "./config.js";

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

describe("HODEI_RETENTION", () => {
  it("defaults to 7 days", () => {
    assert.equal(parseServerConfig({}).retentionMs, 7 * 86_400_000);
  });

  it("reads a number with a unit (s, m, h, d), and 0 for keeping everything", () => {
    const ms = (value: string) => parseServerConfig({ HODEI_RETENTION: value }).retentionMs;
    assert.equal(ms("7d"), 7 * 86_400_000);
    assert.equal(ms("12h"), 12 * 3_600_000);
    assert.equal(ms("30m"), 30 * 60_000);
    assert.equal(ms("1s"), 1000);
    assert.equal(ms("0"), 0);
  });

  it("refuses anything else with a message naming the variable and the expected form", () => {
    for (const bad of ["7", "7 days", "-1d", "1.5h", "1w", "", "99999d"]) {
      assert.throws(
        () => parseServerConfig({ HODEI_RETENTION: bad }),
        (err: Error) => /HODEI_RETENTION/.test(err.message) && /7d, 12h or 30m/.test(err.message),
        `"${bad}" is refused`,
      );
    }
  });
});

describe("HODEI_CLUSTER_ID", () => {
  it("is only an override: unset, the id is decided from the database once it is open", () => {
    assert.equal(parseServerConfig({}).clusterIdOverride, undefined);
    assert.equal(parseServerConfig({ HODEI_CLUSTER_ID: "prod-1" }).clusterIdOverride, "prod-1");
  });

  it("is refused unless it can be a Kubernetes label value (no '-' at either end)", () => {
    for (const id of ["prod-", "-prod", `a${"b".repeat(63)}`]) assert.throws(() => parseServerConfig({ HODEI_CLUSTER_ID: id }), /HODEI_CLUSTER_ID/, id);
    assert.equal(parseServerConfig({ HODEI_CLUSTER_ID: "a" }).clusterIdOverride, "a");
  });
});

describe("Kubernetes defaults", () => {
  it("run the versioned worker image with IfNotPresent unless HODEI_K8S_IMAGE_PULL_POLICY says otherwise", () => {
    const config = parseServerConfig({});
    assert.match(config.kubernetes.image, /^hodei-worker:\d+\.\d+\.\d+/);
    assert.equal(config.docker.image, config.kubernetes.image, "both providers share the tag hodei image build gives");
    assert.equal(config.kubernetes.imagePullPolicy, "if-not-present");
    assert.equal(parseServerConfig({ HODEI_K8S_IMAGE_PULL_POLICY: "always" }).kubernetes.imagePullPolicy, "always");
    assert.throws(() => parseServerConfig({ HODEI_K8S_IMAGE_PULL_POLICY: "Always" }), /HODEI_K8S_IMAGE_PULL_POLICY/);
  });
});

describe("HODEI_AUTH", () => {
  it("is required by default", () => {
    assert.equal(parseServerConfig({}).isAuthRequired, true);
  });

  it("may be turned off on a loopback address", () => {
    for (const host of ["127.0.0.1", "localhost", "::1", "127.0.0.2"]) {
      assert.equal(parseServerConfig({ HODEI_AUTH: "off", HODEI_HOST: host }).isAuthRequired, false, host);
    }
  });

  it("is not turned off on another address without HODEI_AUTH_INSECURE=1, saying what to do", () => {
    for (const host of ["0.0.0.0", "::", "10.1.2.3", "hodei.example.com"]) {
      assert.throws(
        () => parseServerConfig({ HODEI_AUTH: "off", HODEI_HOST: host }),
        (err: Error) => err.message.includes(`HODEI_HOST=${host}`) && /HODEI_AUTH_INSECURE=1/.test(err.message),
        host,
      );
    }
    assert.equal(parseServerConfig({ HODEI_AUTH: "off", HODEI_HOST: "0.0.0.0", HODEI_AUTH_INSECURE: "1" }).isAuthRequired, false);
  });

  it("refuses values other than required and off", () => {
    assert.throws(() => parseServerConfig({ HODEI_AUTH: "none" }), /HODEI_AUTH/);
    assert.throws(() => parseServerConfig({ HODEI_AUTH_INSECURE: "yes" }), /HODEI_AUTH_INSECURE/);
  });
});

describe("HODEI_DOCKER_RUNTIME_DIR", () => {
  it("may not hold the admin key (it is mounted into containers and copied into the worker image)", () => {
    assert.throws(() => parseServerConfig({ HODEI_DATA_DIR: "/srv/hodei", HODEI_DOCKER_RUNTIME_DIR: "/srv/hodei" }), /admin\.key/);
    assert.throws(() => parseServerConfig({ HODEI_DATA_DIR: "/srv/hodei", HODEI_DOCKER_RUNTIME_DIR: "/srv" }), /admin\.key/);
    assert.throws(() => parseServerConfig({ HODEI_DATA_DIR: "/srv/hodei", HODEI_DOCKER_RUNTIME_DIR: "/srv" }), /secret\.key/);
    assert.equal(parseServerConfig({ HODEI_DATA_DIR: "/srv/hodei" }).docker.runtimeDir, "/srv/hodei/agent-runtime");
    assert.equal(parseServerConfig({ HODEI_DATA_DIR: "/srv/hodei", HODEI_DOCKER_RUNTIME_DIR: "/srv/hodei-runtime" }).docker.runtimeDir, "/srv/hodei-runtime");
  });
});

describe("HODEI_SECRET_KEY", () => {
  it("is unset by default (the key is then <data dir>/secret.key)", () => {
    assert.equal(parseServerConfig({}).secretKey, undefined);
  });

  it("takes the base64 of 32 bytes, standard or URL-safe, padded or not", () => {
    const key = Buffer.alloc(32, 0xfb);
    for (const text of [key.toString("base64"), key.toString("base64url"), `${key.toString("base64")}\n`]) {
      assert.deepEqual(parseServerConfig({ HODEI_SECRET_KEY: text }).secretKey, key, text);
    }
  });

  it("stops the server naming the variable, and saying what is wrong without showing the value", () => {
    for (const bad of ["hunter2 with spaces", Buffer.alloc(16, 1).toString("base64"), Buffer.alloc(33, 1).toString("base64"), ""]) {
      assert.throws(
        () => parseServerConfig({ HODEI_SECRET_KEY: bad }),
        (err: Error) => /HODEI_SECRET_KEY/.test(err.message) && /base64 of 32 random bytes/.test(err.message) && (bad === "" || !err.message.includes(bad)),
        JSON.stringify(bad),
      );
    }
  });
});

describe("the CLI's API key settings", () => {
  it("takes --token, else HODEI_TOKEN", () => {
    assert.equal(clientToken("flag", { HODEI_TOKEN: "env" }), "flag");
    assert.equal(clientToken(undefined, { HODEI_TOKEN: "env" }), "env");
    assert.equal(clientToken(undefined, { HODEI_TOKEN: "" }), undefined);
    assert.equal(clientToken(undefined, {}), undefined);
  });

  it("looks for admin.key in HODEI_DATA_DIR, as the server writes it, else in ./.hodei", () => {
    assert.equal(clientAdminKeyPath({ HODEI_DATA_DIR: "/srv/hodei" }), "/srv/hodei/admin.key");
    assert.equal(clientAdminKeyPath({}), resolve(".hodei", "admin.key"));
  });

  it("knows loopback hosts, bracketed or not", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"]) assert.equal(isLoopbackHost(host), true, host);
    for (const host of ["0.0.0.0", "10.0.0.1", "[::]", "example.com", "127.0.0.1.example.com", "localhost.example.com", ""]) assert.equal(isLoopbackHost(host), false, host);
  });
});

describe("TLS and the worker port", () => {
  it("are off by default: plain HTTP, everything on HODEI_PORT", () => {
    const config = parseServerConfig({});
    assert.equal(config.tls, undefined);
    assert.equal(config.workerPort, undefined);
  });

  it("reads the certificate, key and CA paths, and the worker port", () => {
    const config = parseServerConfig({ HODEI_TLS_CERT: "/etc/hodei/tls.crt", HODEI_TLS_KEY: "/etc/hodei/tls.key", HODEI_TLS_CA: "/etc/hodei/ca.crt", HODEI_WORKER_PORT: "7071" });
    assert.deepEqual(config.tls, { certPath: "/etc/hodei/tls.crt", keyPath: "/etc/hodei/tls.key", caPath: "/etc/hodei/ca.crt" });
    assert.equal(config.workerPort, 7071);
    assert.equal(config.unusedTlsCaPath, undefined);
  });

  it("refuses a certificate without its key, or a key without its certificate, naming both", () => {
    for (const env of [{ HODEI_TLS_CERT: "/c" }, { HODEI_TLS_KEY: "/k" }]) {
      assert.throws(() => parseServerConfig(env), /HODEI_TLS_CERT and HODEI_TLS_KEY/);
    }
  });

  it("notes a CA given while TLS is off, so that start-up can say it is unused", () => {
    assert.equal(parseServerConfig({ HODEI_TLS_CA: "/ca.crt" }).unusedTlsCaPath, "/ca.crt");
  });

  it("refuses a worker port equal to HODEI_PORT, but lets both pick free ports", () => {
    assert.throws(() => parseServerConfig({ HODEI_PORT: "7070", HODEI_WORKER_PORT: "7070" }), /HODEI_WORKER_PORT must differ from HODEI_PORT/);
    assert.throws(() => parseServerConfig({ HODEI_WORKER_PORT: "7070" }), /HODEI_WORKER_PORT must differ/);
    assert.equal(parseServerConfig({ HODEI_PORT: "0", HODEI_WORKER_PORT: "0" }).workerPort, 0);
  });
});

describe("HODEI_REGISTER_*: refused Register calls", () => {
  it("defaults to 10 free failures per minute, then 250 ms doubling to 10 s, 8 waiting per address, 10,000 addresses", () => {
    assert.deepEqual(parseServerConfig({}).registerLimits, {
      freeFailures: 10,
      baseDelayMs: 250,
      maxDelayMs: 10_000,
      windowMs: 60_000,
      maxPendingPerAddress: 8,
      maxAddresses: 10_000,
    });
  });

  it("reads each variable", () => {
    const limits = parseServerConfig({
      HODEI_REGISTER_FREE_FAILURES: "0",
      HODEI_REGISTER_FAILURE_DELAY_MS: "100",
      HODEI_REGISTER_MAX_FAILURE_DELAY_MS: "2000",
      HODEI_REGISTER_FAILURE_WINDOW_MS: "30000",
      HODEI_REGISTER_MAX_PENDING_REFUSALS: "2",
      HODEI_REGISTER_MAX_ADDRESSES: "50",
    }).registerLimits;
    assert.deepEqual(limits, { freeFailures: 0, baseDelayMs: 100, maxDelayMs: 2000, windowMs: 30_000, maxPendingPerAddress: 2, maxAddresses: 50 });
  });

  it("refuses a first delay longer than the longest, and a pending bound of 0, naming the variables", () => {
    assert.throws(() => parseServerConfig({ HODEI_REGISTER_FAILURE_DELAY_MS: "20000" }), /HODEI_REGISTER_FAILURE_DELAY_MS.*HODEI_REGISTER_MAX_FAILURE_DELAY_MS/);
    assert.throws(() => parseServerConfig({ HODEI_REGISTER_MAX_PENDING_REFUSALS: "0" }), /HODEI_REGISTER_MAX_PENDING_REFUSALS/);
  });
});

describe("HODEI_QUEUE_TIMEOUT", () => {
  it("is unset by default: jobs wait in the queue for ever", () => {
    assert.equal(parseServerConfig({}).queueTimeoutSeconds, 0);
  });

  it("reads a duration like HODEI_RETENTION, in whole seconds, up to 30 days; 0 is for ever too", () => {
    const seconds = (value: string) => parseServerConfig({ HODEI_QUEUE_TIMEOUT: value }).queueTimeoutSeconds;
    assert.equal(seconds("10m"), 600);
    assert.equal(seconds("1h"), 3600);
    assert.equal(seconds("30s"), 30);
    assert.equal(seconds("30d"), 30 * 86_400);
    assert.equal(seconds("0"), 0);
  });

  it("refuses anything else, naming the variable and the form", () => {
    for (const bad of ["10", "ten minutes", "-1m", "31d", "1.5h"]) {
      assert.throws(
        () => parseServerConfig({ HODEI_QUEUE_TIMEOUT: bad }),
        (err: Error) => /HODEI_QUEUE_TIMEOUT/.test(err.message) && /7d, 12h or 30m, up to 30d/.test(err.message),
        `"${bad}" is refused`,
      );
    }
  });
});

describe("HODEI_SCHEDULE_GRACE", () => {
  it("is 30 s by default and reads a duration", () => {
    assert.equal(parseServerConfig({}).scheduleGraceMs, 30_000);
    assert.equal(parseServerConfig({ HODEI_SCHEDULE_GRACE: "5m" }).scheduleGraceMs, 300_000);
    assert.equal(parseServerConfig({ HODEI_SCHEDULE_GRACE: "1d" }).scheduleGraceMs, 86_400_000);
  });

  it("refuses 0, more than a day and anything not a duration, naming the variable", () => {
    assert.throws(() => parseServerConfig({ HODEI_SCHEDULE_GRACE: "0" }), /0 is not allowed: every tick is seen a little late[\s\S]*HODEI_SCHEDULE_GRACE/);
    for (const bad of ["2d", "30", "soon"]) {
      assert.throws(() => parseServerConfig({ HODEI_SCHEDULE_GRACE: bad }), /is not a duration[\s\S]*HODEI_SCHEDULE_GRACE/, `"${bad}" is refused`);
    }
  });
});

describe("the Kubernetes provider's placement settings (resources)", () => {
  it("waits 10 minutes for an unschedulable pod by default, reads a duration, and 0 for no limit", () => {
    assert.equal(parseServerConfig({}).kubernetes.pendingTimeoutMs, 10 * 60_000);
    assert.equal(parseServerConfig({ HODEI_K8S_PENDING_TIMEOUT: "90s" }).kubernetes.pendingTimeoutMs, 90_000);
    assert.equal(parseServerConfig({ HODEI_K8S_PENDING_TIMEOUT: "0" }).kubernetes.pendingTimeoutMs, 0);
    assert.throws(() => parseServerConfig({ HODEI_K8S_PENDING_TIMEOUT: "10" }), /"10" is not a duration.*up to 30d; 0 waits as long as the job allows\s+→ at HODEI_K8S_PENDING_TIMEOUT/);
  });

  it("checks the provider-wide node selector and tolerations as the API server would, and completes tolerations", () => {
    const config = parseServerConfig({ HODEI_K8S_NODE_SELECTOR: "pool=jobs", HODEI_K8S_TOLERATIONS: '[{"key":"dedicated","value":"hodei","effect":"NoSchedule"}]' });
    assert.deepEqual(config.kubernetes.nodeSelector, { pool: "jobs" });
    assert.deepEqual(config.kubernetes.tolerations, [{ key: "dedicated", operator: "Equal", value: "hodei", effect: "NoSchedule" }]);
    assert.throws(() => parseServerConfig({ HODEI_K8S_NODE_SELECTOR: "bad key=x" }), /key "bad key".*\s+→ at HODEI_K8S_NODE_SELECTOR/);
    assert.throws(() => parseServerConfig({ HODEI_K8S_TOLERATIONS: '[{"key":"a","operator":"Exists","value":"b"}]' }), /\[0\]: operator Exists takes no value.*\s+→ at HODEI_K8S_TOLERATIONS/);
    assert.throws(() => parseServerConfig({ HODEI_K8S_TOLERATIONS: "{}" }), /a JSON array of tolerations\s+→ at HODEI_K8S_TOLERATIONS/);
  });
});

describe("webhooks (HODEI_WEBHOOK_*)", () => {
  it("default to none, unsigned, public addresses only, 10 s per request, retried for a day", () => {
    assert.deepEqual(parseServerConfig({}).webhooks, {
      urls: [],
      secret: "",
      isPrivateAllowed: false,
      timeoutMs: 10_000,
      retry: { baseMs: 10_000, capMs: 3_600_000, giveUpAfterMs: 86_400_000 },
    });
  });

  it("take a server-wide URL checked like a job's, and a private one only with HODEI_WEBHOOK_ALLOW_PRIVATE=1", () => {
    assert.deepEqual(parseServerConfig({ HODEI_WEBHOOK_URL: "https://hooks.example.com/all" }).webhooks.urls, ["https://hooks.example.com/all"]);
    assert.throws(() => parseServerConfig({ HODEI_WEBHOOK_URL: "http://10.0.0.5/hook" }), /HODEI_WEBHOOK_URL: 10\.0\.0\.5 is a private address.*HODEI_WEBHOOK_ALLOW_PRIVATE=1/);
    assert.throws(() => parseServerConfig({ HODEI_WEBHOOK_URL: "ftp://hooks.example.com/" }), /HODEI_WEBHOOK_URL: "ftp:" URLs are not sent to/);
    const allowed = parseServerConfig({ HODEI_WEBHOOK_URL: "http://10.0.0.5/hook", HODEI_WEBHOOK_ALLOW_PRIVATE: "1" }).webhooks;
    assert.deepEqual([allowed.urls, allowed.isPrivateAllowed], [["http://10.0.0.5/hook"], true]);
  });

  it("refuse a secret shorter than 16 characters, naming the variable", () => {
    assert.throws(() => parseServerConfig({ HODEI_WEBHOOK_SECRET: "short" }), /at least 16 characters[\s\S]*HODEI_WEBHOOK_SECRET/);
    assert.equal(parseServerConfig({ HODEI_WEBHOOK_SECRET: "0123456789abcdef" }).webhooks.secret, "0123456789abcdef");
  });

  it("read the retry window as a duration", () => {
    assert.equal(parseServerConfig({ HODEI_WEBHOOK_RETRY_FOR: "12h" }).webhooks.retry.giveUpAfterMs, 12 * 3_600_000);
    assert.throws(() => parseServerConfig({ HODEI_WEBHOOK_RETRY_FOR: "8d" }), /HODEI_WEBHOOK_RETRY_FOR/);
  });
});
